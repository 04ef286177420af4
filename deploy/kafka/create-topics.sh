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

create payment.order.requested --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=604800000
create payment.order.succeeded --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create payment.order.failed --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create payment.refund.requested --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=604800000
create payment.refund.succeeded --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create payment.refund.failed --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create payout.requested --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=604800000
create payout.paid --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create payout.failed --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create reconciliation.run.completed --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create reconciliation.mismatch.found --partitions 6 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create wallet.balance.updated --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create ledger.entry.posted --partitions 12 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=1209600000
create settle.control.relay-markers --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=-1
create settle.dlq.audit --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=31536000000
create payment.order.requested.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payment.order.succeeded.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payment.order.failed.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payment.refund.requested.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payout.requested.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payout.paid.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payout.failed.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payment.refund.succeeded.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create payment.refund.failed.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create wallet.balance.updated.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
create ledger.entry.posted.dlq --partitions 1 --replication-factor 3 --config cleanup.policy=delete --config min.insync.replicas=2 --config retention.ms=2592000000
