# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_topic
short_description: Create, grow, configure or delete a Kafka topic through the Kafka CLI
version_added: "0.1.0"
author:
  - HingeCraft platform engineering (@hingecraft)
description:
  - Reads the topic with C(TopicCommand --describe), then runs only what differs - create it, raise its partition
    count, set the listed topic settings (C(ConfigCommand --alter --add-config)), or delete it.
  - Settings not listed in O(config) are left as they are. A partition count can only grow and a replication factor
    cannot be changed here (that is a reassignment); both fail with a message instead.
extends_documentation_fragment: [hingecraft.enterprise_db.kafka]
options:
  name:
    description: Topic name.
    type: str
    required: true
  partitions:
    description: Partition count (required to create the topic).
    type: int
  replication_factor:
    description: Replication factor (required to create the topic).
    type: int
  config:
    description: Topic settings, for example C(min.insync.replicas) and C(retention.ms).
    type: dict
    default: {}
  state:
    description: Whether the topic exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the topic and reports the commands it would run without running them.
  diff_mode:
    support: full
    description: Returns the topic before and after.
seealso:
  - name: Kafka topic configurations
    link: https://kafka.apache.org/documentation/#topicconfigs
    description: Kafka's topic-level settings.
"""

EXAMPLES = r"""
- name: Donations topic
  hingecraft.enterprise_db.kafka_topic:
    name: donations
    partitions: 6
    replication_factor: 3
    config: {min.insync.replicas: 2, retention.ms: 604800000}
    bootstrap_server: 10.0.0.11:9092
    command_config: /etc/kafka/admin.properties
"""

RETURN = r"""
commands:
  description: The Kafka tool calls that changed something (or would, in check mode); no secrets.
  returned: always
  type: list
  elements: str
topic:
  description: The topic after the run (null when absent).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.kafka import (
    CONFIG_COMMAND,
    TOPIC_COMMAND,
    KafkaCli,
    config_changes,
    kafka_common_argument_spec,
    parse_topic_describe,
)


def plan(current, params):
    """(list of (main class, args), error message or None) to go from `current` to what `params` want."""
    name = params['name']
    if params['state'] == 'absent':
        return ([(TOPIC_COMMAND, ['--delete', '--topic', name])] if current else []), None
    wanted_config = {k: str(v) for k, v in (params['config'] or {}).items()}
    if current is None:
        if not params['partitions'] or not params['replication_factor']:
            return [], f'topic {name} does not exist: partitions and replication_factor are needed to create it'
        args = ['--create', '--topic', name, '--partitions', str(params['partitions']),
                '--replication-factor', str(params['replication_factor'])]
        for k, v in sorted(wanted_config.items()):
            args += ['--config', f'{k}={v}']
        return [(TOPIC_COMMAND, args)], None
    steps = []
    rf = params['replication_factor']
    if rf and rf != current['replication_factor']:
        return [], (f'topic {name} has replication factor {current["replication_factor"]}, wanted {rf}: change it '
                    'with a partition reassignment, not with this module')
    if params['partitions']:
        if params['partitions'] < current['partitions']:
            return [], f'topic {name} has {current["partitions"]} partitions; a partition count cannot shrink'
        if params['partitions'] > current['partitions']:
            steps.append((TOPIC_COMMAND, ['--alter', '--topic', name, '--partitions', str(params['partitions'])]))
    changes = config_changes(current['config'], wanted_config)
    if changes:
        steps.append((CONFIG_COMMAND, ['--alter', '--entity-type', 'topics', '--entity-name', name, '--add-config',
                                       ','.join(f'{k}={v}' if ',' not in v else f'{k}=[{v}]'
                                                for k, v in changes.items())]))
    return steps, None


def main():
    spec = kafka_common_argument_spec()
    spec.update(
        name={'type': 'str', 'required': True},
        partitions={'type': 'int'},
        replication_factor={'type': 'int'},
        config={'type': 'dict', 'default': {}},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    cli = KafkaCli(module)

    def describe():
        return parse_topic_describe(cli.run(TOPIC_COMMAND, ['--describe', '--topic', module.params['name'],
                                                            '--if-exists'], record=False))

    before = describe()
    steps, error = plan(before, module.params)
    if error:
        module.fail_json(msg=error, topic=before)
    for main_class, args in steps:
        if module.check_mode:
            cli.commands.append(' '.join([main_class.rsplit('.', 1)[-1]] + args))
        else:
            cli.run(main_class, args)
    after = describe() if steps and not module.check_mode else before
    module.exit_json(changed=bool(steps), commands=cli.commands, topic=after,
                     diff={'before': before or {}, 'after': after or {}})


if __name__ == '__main__':
    main()
