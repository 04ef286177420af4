"""Generate deploy/kafka/create-topics.sh from deploy/topics.yaml (the one list of Settle's topics).

Usage: python deploy/gen_topics.py [--check]
The script runs in the apache/kafka image (no Python there), so it is generated rather than written
by hand; with --check this exits 1 if the committed script no longer matches topics.yaml.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
TOPICS_FILE = DEPLOY / "topics.yaml"
SCRIPT_FILE = DEPLOY / "kafka" / "create-topics.sh"

_HEADER = """\
#!/bin/sh
# Generated from deploy/topics.yaml by `python deploy/gen_topics.py`; do not edit by hand.
# Creates every Settle topic that does not exist yet. Existing topics are left as they are: partition
# counts and configs of a live topic are changed deliberately (kafka-configs.sh), never by a re-run.
# Runs in the apache/kafka image: KAFKA_BOOTSTRAP_SERVERS=kafka-1:9092 sh create-topics.sh
set -eu
: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS to the brokers to create the topics on}"
KAFKA_TOPICS_BIN="${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}"

create() {
  topic="$1"
  shift
  "$KAFKA_TOPICS_BIN" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --create --if-not-exists --topic "$topic" "$@"
  echo "topic $topic: present"
}

"""


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def _config_value(value: object) -> str:
    # YAML reads `retention.ms: -1` as an int; Kafka wants the text.
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_topics(path: Path = TOPICS_FILE) -> list[Topic]:
    """Every topic of topics.yaml with the defaults applied (a topic's own settings win)."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults: dict[str, Any] = document.get("defaults", {})
    topics = []
    for entry in document["topics"]:
        config = {**defaults.get("config", {}), **entry.get("config", {})}
        topics.append(
            Topic(
                name=entry["name"],
                partitions=int(entry["partitions"]),
                replication_factor=int(entry.get("replication_factor", defaults["replication_factor"])),
                config={key: _config_value(value) for key, value in config.items()},
            )
        )
    return topics


def _create_line(topic: Topic) -> str:
    arguments = [
        "create",
        topic.name,
        "--partitions",
        str(topic.partitions),
        "--replication-factor",
        str(topic.replication_factor),
    ]
    for key, value in sorted(topic.config.items()):
        arguments += ["--config", f"{key}={value}"]
    return shlex.join(arguments)


def render(topics: list[Topic]) -> str:
    return _HEADER + "".join(_create_line(topic) + "\n" for topic in topics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if create-topics.sh is stale")
    options = parser.parse_args()
    script = render(load_topics())
    if options.check:
        if not SCRIPT_FILE.exists() or SCRIPT_FILE.read_text(encoding="utf-8") != script:
            print("deploy/kafka/create-topics.sh is stale; run `python deploy/gen_topics.py`")
            return 1
        print("deploy/kafka/create-topics.sh is up to date")
        return 0
    SCRIPT_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCRIPT_FILE.write_text(script, encoding="utf-8")
    SCRIPT_FILE.chmod(0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main())
