# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_scram_user
short_description: Create, update or delete a Kafka SCRAM user through the Kafka CLI
version_added: "0.1.0"
author:
  - HingeCraft platform engineering (@hingecraft)
description:
  - Reads the user's SCRAM credentials with C(ConfigCommand --describe --entity-type users).
  - Kafka never returns a password or its salted form, so the module keeps a fingerprint on the target (a random
    salt and PBKDF2-HMAC-SHA256 of the password, in a root-only file under O(fingerprint_dir)); the credential is
    written again when the user lacks the mechanism, its iteration count differs, or the password no longer matches
    the fingerprint (or there is none yet).
  - The password goes to C(ConfigCommand --add-config-file) through a root-only temporary file, never on a command
    line.
extends_documentation_fragment: [hingecraft.enterprise_db.kafka]
options:
  name:
    description: User name (principal C(User:<name>)).
    type: str
    required: true
  password:
    description: "Password; required with O(state=present). Letters, digits and C(_ . ~ + @ % : / -) only."
    type: str
  mechanism:
    description: SCRAM mechanism.
    type: str
    choices: [SCRAM-SHA-512, SCRAM-SHA-256]
    default: SCRAM-SHA-512
  iterations:
    description: PBKDF2 iterations of the credential.
    type: int
    default: 8192
  fingerprint_dir:
    description: Root-only directory on the target for the password fingerprints.
    type: path
    default: /var/lib/hingecraft/kafka-scram
  state:
    description: Whether the user's credential exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the user and reports the commands it would run without running them.
  diff_mode:
    support: none
    description: No diff is returned (a password has nothing to show).
seealso:
  - name: Kafka SASL/SCRAM
    link: https://kafka.apache.org/documentation/#security_sasl_scram
    description: Kafka's SASL/SCRAM credentials.
"""

EXAMPLES = r"""
- name: Application user
  hingecraft.enterprise_db.kafka_scram_user:
    name: app
    password: "{{ vault_kafka_app_password }}"
    bootstrap_server: 10.0.0.11:9092
    command_config: /etc/kafka/admin.properties
  no_log: true
"""

RETURN = r"""
commands:
  description: The ConfigCommand calls that changed something (or would, in check mode), without the password.
  returned: always
  type: list
  elements: str
reason:
  description: Why the credential was written (created, iterations, password, deleted), or null.
  returned: always
  type: str
mechanisms:
  description: The user's SCRAM mechanisms and iteration counts after the run.
  returned: always
  type: dict
"""

import hashlib
import hmac
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hingecraft.enterprise_db.plugins.module_utils.kafka import (
    CONFIG_COMMAND,
    KafkaCli,
    kafka_common_argument_spec,
    parse_scram_describe,
)

PASSWORD = re.compile(r'^[A-Za-z0-9_.~+@%:/-]+$')
FINGERPRINT_ROUNDS = 200000


def fingerprint(password, salt):
    return hashlib.pbkdf2_hmac('sha256', password.encode(), salt, FINGERPRINT_ROUNDS).hex()


def fingerprint_matches(text, password):
    """`text` is '<salt hex>:<hash hex>' as written by make_fingerprint."""
    try:
        salt_hex, digest = text.strip().split(':', 1)
        return hmac.compare_digest(fingerprint(password, bytes.fromhex(salt_hex)), digest)
    except ValueError:
        return False


def make_fingerprint(password):
    salt = os.urandom(16)
    return f'{salt.hex()}:{fingerprint(password, salt)}\n'


def needs_update(mechs, mechanism, iterations, fingerprint_text, password):
    if mechanism not in mechs:
        return 'created'
    if mechs[mechanism] != iterations:
        return 'iterations'
    if fingerprint_text is None or not fingerprint_matches(fingerprint_text, password):
        return 'password'
    return None


def main():
    spec = kafka_common_argument_spec()
    spec.update(
        name={'type': 'str', 'required': True},
        password={'type': 'str', 'no_log': True},
        mechanism={'type': 'str', 'choices': ['SCRAM-SHA-512', 'SCRAM-SHA-256'], 'default': 'SCRAM-SHA-512'},
        iterations={'type': 'int', 'default': 8192},
        fingerprint_dir={'type': 'path', 'default': '/var/lib/hingecraft/kafka-scram'},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[('state', 'present', ['password'])])
    p = module.params
    if p['state'] == 'present' and not PASSWORD.match(p['password']):
        module.fail_json(msg=f'the password of {p["name"]} holds characters outside {PASSWORD.pattern}')
    if not re.match(r'^[A-Za-z0-9._@-]+$', p['name']):
        module.fail_json(msg=f'user name {p["name"]!r}: letters, digits and . _ @ - only')
    cli = KafkaCli(module)
    describe_args = ['--describe', '--entity-type', 'users', '--entity-name', p['name']]
    before = parse_scram_describe(cli.run(CONFIG_COMMAND, describe_args, record=False)).get(p['name'], {})
    fp_path = os.path.join(p['fingerprint_dir'], f'{p["name"]}.{p["mechanism"]}')
    fp_text = None
    if os.path.exists(fp_path):
        with open(fp_path, encoding='utf-8') as f:
            fp_text = f.read()
    alter = ['--alter', '--entity-type', 'users', '--entity-name', p['name']]
    reason = None
    if p['state'] == 'absent':
        if p['mechanism'] in before:
            reason = 'deleted'
            cli.commands.append(' '.join(['ConfigCommand'] + alter + ['--delete-config', p['mechanism']]))
            if not module.check_mode:
                cli.run(CONFIG_COMMAND, alter + ['--delete-config', p['mechanism']], record=False)
                if fp_text is not None:
                    os.unlink(fp_path)
    else:
        reason = needs_update(before, p['mechanism'], p['iterations'], fp_text, p['password'])
        if reason:
            cli.commands.append(' '.join(['ConfigCommand'] + alter + ['--add-config-file', '<temporary file>']))
            if not module.check_mode:
                os.makedirs(p['fingerprint_dir'], mode=0o700, exist_ok=True)
                with tempfile.NamedTemporaryFile('w', dir=p['fingerprint_dir'], suffix='.properties') as f:
                    f.write(f'{p["mechanism"]}=iterations={p["iterations"]},password={p["password"]}\n')
                    f.flush()
                    cli.run(CONFIG_COMMAND, alter + ['--add-config-file', f.name], record=False)
                fd = os.open(fp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, 'w', encoding='utf-8') as f:
                    f.write(make_fingerprint(p['password']))
    after = before
    if reason and not module.check_mode:
        after = parse_scram_describe(cli.run(CONFIG_COMMAND, describe_args, record=False)).get(p['name'], {})
    module.exit_json(changed=bool(reason), reason=reason, commands=cli.commands, mechanisms=after)


if __name__ == '__main__':
    main()
