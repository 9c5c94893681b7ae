# Copyright: HingeCraft platform engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  bootstrap_server:
    description: Broker address(es), C(host:port[,host:port...]), that the Kafka tools connect to.
    type: str
    required: true
  command_config:
    description:
      - Admin client properties file (security protocol, SASL credentials, truststore) passed to the tools with
        C(--command-config). Keep it readable by root only; the module never puts a password on a command line.
    type: path
    required: true
  tool:
    description: Wrapper that runs a Kafka tool by its main class (C(tool <main class> args...)), as roles/kafka installs it.
    type: path
    default: /usr/local/sbin/hc-kafka-tool
  timeout:
    description: Seconds each tool call may take before it is killed and the module fails.
    type: int
    default: 120
requirements:
  - Kafka's jars and a Java runtime on the target (roles/kafka installs both and the tool wrapper).
"""
