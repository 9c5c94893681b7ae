# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_acl
short_description: Make one principal's Kafka ACLs exactly the listed ones
version_added: "0.1.0"
author:
  - HingeCraft platform engineering (@hingecraft)
description:
  - Lists the principal's ACLs with C(AclCommand --list --principal), adds the missing ones and, with
    O(exclusive=true), removes the ones not listed, so that the principal can do only what is declared (with
    C(allow.everyone.if.no.acl.found=false), anything else is denied).
extends_documentation_fragment: [hingecraft.enterprise_db.kafka]
options:
  principal:
    description: Principal, for example C(User:app).
    type: str
    required: true
  acls:
    description: The principal's ACL entries.
    type: list
    elements: dict
    default: []
    suboptions:
      resource_type:
        description: Resource type.
        type: str
        required: true
        choices: [topic, group, cluster, transactional_id]
      name:
        description: Resource name (ignored for C(cluster)).
        type: str
      pattern_type:
        description: Whether O(acls[].name) is a full name or a prefix.
        type: str
        choices: [literal, prefixed]
        default: literal
      operations:
        description: Operations.
        type: list
        elements: str
        required: true
        choices: [read, write, create, delete, alter, describe, cluster_action, describe_configs, alter_configs,
                  idempotent_write, all]
      permission:
        description: Allow or deny.
        type: str
        choices: [allow, deny]
        default: allow
      host:
        description: Client host the entry applies to.
        type: str
        default: '*'
  exclusive:
    description: Remove the principal's ACLs that are not listed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Lists the ACLs and reports the commands it would run without running them.
  diff_mode:
    support: full
    description: Returns the principal's ACLs before and after.
seealso:
  - name: Kafka authorization and ACLs
    link: https://kafka.apache.org/documentation/#security_authz
    description: Kafka's authorizer and ACL semantics.
"""

EXAMPLES = r"""
- name: The producer may write and describe the donations topic, nothing else
  hingecraft.enterprise_db.kafka_acl:
    principal: User:producer
    acls:
      - {resource_type: topic, name: donations, operations: [write, describe]}
    bootstrap_server: 10.0.0.11:9092
    command_config: /etc/kafka/admin.properties
"""

RETURN = r"""
commands:
  description: The AclCommand calls that changed something (or would, in check mode).
  returned: always
  type: list
  elements: str
acls:
  description: The principal's ACLs after the run, as C(resource_type name pattern_type host operation permission).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.kafka import (
    ACL_COMMAND,
    OPERATIONS,
    KafkaCli,
    acl_batches,
    kafka_common_argument_spec,
    parse_acl_list,
    wanted_acls,
)


def plan(current, wanted, exclusive):
    """(to add, to remove), each sorted."""
    return sorted(wanted - current), (sorted(current - wanted) if exclusive else [])


def _show(acls):
    return sorted(' '.join((a[0], a[1], a[2], a[4], a[5], a[6])) for a in acls)


def main():
    spec = kafka_common_argument_spec()
    spec.update(
        principal={'type': 'str', 'required': True},
        acls={'type': 'list', 'elements': 'dict', 'default': [], 'options': {
            'resource_type': {'type': 'str', 'required': True, 'choices': ['topic', 'group', 'cluster', 'transactional_id']},
            'name': {'type': 'str'},
            'pattern_type': {'type': 'str', 'choices': ['literal', 'prefixed'], 'default': 'literal'},
            'operations': {'type': 'list', 'elements': 'str', 'required': True, 'choices': sorted(OPERATIONS)},
            'permission': {'type': 'str', 'choices': ['allow', 'deny'], 'default': 'allow'},
            'host': {'type': 'str', 'default': '*'},
        }},
        exclusive={'type': 'bool', 'default': True},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    principal = module.params['principal']
    for e in module.params['acls']:
        if e['resource_type'] != 'cluster' and not e['name']:
            module.fail_json(msg=f'acls: a {e["resource_type"]} entry of {principal} needs a name')
    cli = KafkaCli(module)

    def current():
        return {a for a in parse_acl_list(cli.run(ACL_COMMAND, ['--list', '--principal', principal], record=False))
                if a[3] == principal}

    before = current()
    add, remove = plan(before, wanted_acls(principal, module.params['acls']), module.params['exclusive'])
    for action, items in (('remove', remove), ('add', add)):
        for args in acl_batches(action, items):
            if module.check_mode:
                cli.commands.append(' '.join(['AclCommand'] + args))
            else:
                cli.run(ACL_COMMAND, args)
    after = current() if (add or remove) and not module.check_mode else before
    module.exit_json(changed=bool(add or remove), commands=cli.commands, acls=_show(after),
                     diff={'before': '\n'.join(_show(before)) + '\n', 'after': '\n'.join(_show(after)) + '\n'})


if __name__ == '__main__':
    main()
