# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the kafka_* modules: the tool wrapper call (recorded, bounded in time) and the parsers of the Kafka
CLI outputs. Parsers are pure functions so that unit tests feed them the CLI's text."""

from __future__ import annotations

import re

TOPIC_COMMAND = 'org.apache.kafka.tools.TopicCommand'
ACL_COMMAND = 'org.apache.kafka.tools.AclCommand'
CONFIG_COMMAND = 'kafka.admin.ConfigCommand'


def kafka_common_argument_spec():
    return {
        'bootstrap_server': {'type': 'str', 'required': True},
        'command_config': {'type': 'path', 'required': True},
        'tool': {'type': 'path', 'default': '/usr/local/sbin/hc-kafka-tool'},
        'timeout': {'type': 'int', 'default': 120},
    }


class KafkaCli:
    """Runs `timeout <s> <tool> <main class> --bootstrap-server B --command-config C args...` and records each call."""

    def __init__(self, module):
        self.module = module
        self.commands = []

    def run(self, main_class, args, record=True):
        p = self.module.params
        argv = ['timeout', str(p['timeout']), p['tool'], main_class, '--bootstrap-server', p['bootstrap_server'],
                '--command-config', p['command_config']] + list(args)
        if record:
            self.commands.append(' '.join([main_class.rsplit('.', 1)[-1]] + list(args)))
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.module.fail_json(msg=f'{main_class.rsplit(".", 1)[-1]} failed (rc {rc}): {(err or out).strip()[-2000:]}',
                                  rc=rc, commands=self.commands)
        return out


# ---- topics -------------------------------------------------------------------------------------------------------

def parse_topic_describe(text):
    """TopicCommand --describe --topic X --if-exists output -> None (absent) or {partitions, replication_factor,
    config, replicas: {partition: [ids]}}."""
    head = None
    replicas = {}
    for line in text.splitlines():
        if line.startswith('Topic:') and 'PartitionCount:' in line:
            fields = dict(re.findall(r'(\w+):\s*(\S*)', line.split('Configs:')[0]))
            cfg_text = line.split('Configs:', 1)[1].strip() if 'Configs:' in line else ''
            config = {}
            for item in (cfg_text.split(',') if cfg_text else []):
                if '=' in item:
                    k, v = item.split('=', 1)
                    config[k.strip()] = v.strip()
                elif config:  # a value that itself held a comma
                    last = list(config)[-1]
                    config[last] += ',' + item
            head = {'name': fields['Topic'], 'partitions': int(fields['PartitionCount']),
                    'replication_factor': int(fields['ReplicationFactor']), 'config': config}
        elif line.strip().startswith('Topic:') and 'Partition:' in line:
            m = re.search(r'Partition:\s*(\d+).*?Replicas:\s*([\d,]+)', line)
            if m:
                replicas[int(m.group(1))] = [int(x) for x in m.group(2).split(',')]
    if head is not None:
        head['replicas'] = replicas
    return head


def config_changes(current, wanted):
    """Settings to set so that every wanted key has the wanted value (keys not wanted are left alone)."""
    return {k: str(v) for k, v in sorted(wanted.items()) if current.get(k) != str(v)}


# ---- ACLs ---------------------------------------------------------------------------------------------------------

OPERATIONS = {
    'read': 'Read', 'write': 'Write', 'create': 'Create', 'delete': 'Delete', 'alter': 'Alter',
    'describe': 'Describe', 'cluster_action': 'ClusterAction', 'describe_configs': 'DescribeConfigs',
    'alter_configs': 'AlterConfigs', 'idempotent_write': 'IdempotentWrite', 'all': 'All',
}
RESOURCE_TYPES = {'topic': 'TOPIC', 'group': 'GROUP', 'cluster': 'CLUSTER', 'transactional_id': 'TRANSACTIONAL_ID'}

_RESOURCE = re.compile(r'ResourcePattern\(resourceType=(\w+), name=(.*), patternType=(\w+)\)')
_ENTRY = re.compile(r'\(principal=(.*?), host=(.*?), operation=(\w+), permissionType=(\w+)\)')


def parse_acl_list(text):
    """AclCommand --list [--principal P] output -> set of (resource_type, name, pattern_type, principal, host,
    operation, permission), all upper-case enums as Kafka prints them."""
    acls = set()
    resource = None
    for line in text.splitlines():
        m = _RESOURCE.search(line)
        if m:
            resource = (m.group(1), m.group(2), m.group(3))
            continue
        m = _ENTRY.search(line)
        if m and resource:
            acls.add(resource + (m.group(1), m.group(2), m.group(3), m.group(4)))
    return acls


def wanted_acls(principal, entries):
    """The module's acls option -> the same tuples as parse_acl_list."""
    out = set()
    for e in entries:
        rtype = RESOURCE_TYPES[e['resource_type']]
        name = 'kafka-cluster' if rtype == 'CLUSTER' else e['name']
        for op in e['operations']:
            out.add((rtype, name, e.get('pattern_type', 'literal').upper(), principal, e.get('host', '*'),
                     op.upper(), e.get('permission', 'allow').upper()))
    return out


def acl_argv(action, acl, more_operations=()):
    """AclCommand arguments that add or remove one ACL tuple (and the same binding for `more_operations`)."""
    rtype, name, pattern, principal, host, op, perm = acl
    kind = 'allow' if perm == 'ALLOW' else 'deny'
    names = {v.upper(): v for v in OPERATIONS.values()}
    args = [f'--{action}', f'--{kind}-principal', principal, f'--{kind}-host', host]
    for o in (op,) + tuple(more_operations):
        args += ['--operation', names[o.replace('_', '')]]
    if rtype == 'CLUSTER':
        args.append('--cluster')
    else:
        args += [{'TOPIC': '--topic', 'GROUP': '--group', 'TRANSACTIONAL_ID': '--transactional-id'}[rtype], name]
    args += ['--resource-pattern-type', pattern.lower()]
    if action == 'remove':
        args.append('--force')
    return args


def acl_batches(action, acls):
    """One AclCommand call per binding (resource, principal, host, permission) with all its operations."""
    groups = {}
    for a in sorted(acls):
        groups.setdefault((a[0], a[1], a[2], a[3], a[4], a[6]), []).append(a[5])
    out = []
    for (rtype, name, pattern, principal, host, perm), ops in groups.items():
        out.append(acl_argv(action, (rtype, name, pattern, principal, host, ops[0], perm), ops[1:]))
    return out


# ---- SCRAM users --------------------------------------------------------------------------------------------------

_SCRAM = re.compile(r"SCRAM credential configs for user-principal '(.*)' are (.*)$")


def parse_scram_describe(text):
    """ConfigCommand --describe --entity-type users output -> {user: {mechanism: iterations}}."""
    users = {}
    for line in text.splitlines():
        m = _SCRAM.search(line.strip())
        if m:
            mechs = {}
            for part in m.group(2).split(', '):
                mech, _sep, rest = part.partition('=')
                it = re.search(r'iterations=(\d+)', rest)
                mechs[mech.strip()] = int(it.group(1)) if it else None
            users[m.group(1)] = mechs
    return users
