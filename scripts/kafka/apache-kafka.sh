#!/usr/bin/env bash
# A single-node Apache Kafka 4.x (KRaft, combined broker+controller) on loopback,
# from Maven Central jars, for CI and for running the integration tests against a
# real Kafka:
#
#   scripts/kafka/apache-kafka.sh fetch        # jars into .kafka/lib (idempotent)
#   scripts/kafka/apache-kafka.sh start PORT   # broker on 127.0.0.1:PORT, fresh data
#   scripts/kafka/apache-kafka.sh stop PORT
#   scripts/kafka/apache-kafka.sh status PORT
#
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT .venv/bin/pytest tests/integration
#
# A SASL_SSL listener beside the plaintext one (PORT stays the name of the broker):
#
#   apache-kafka.sh start PORT --sasl-ssl SPORT --keystore KEY_AND_CHAIN.pem \
#       --truststore CA.pem [--users FILE] [--client-auth required|requested|none]
#
# listens on 127.0.0.1:SPORT, advertised as localhost:SPORT (so the broker certificate
# names localhost). --keystore is one PEM file: the unencrypted PKCS#8 private key and
# the certificate chain; --truststore the PEM CA certificates that client certificates
# are checked against (--client-auth, default required). --users has one user a line,
# `MECHANISM NAME PASSWORD` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; names and
# passwords of [A-Za-z0-9._~-]): SCRAM users are created when the storage is formatted,
# PLAIN users go to the listener's JAAS config. A throwaway broker for tests: the
# passwords end up in its config file and on the format command's command line.
#
# Everything lives under .kafka/ at the repo root (git-ignored): lib/ for the jars,
# data-PORT/ for the node's config and logs, kafka-PORT.pid and kafka-PORT.log.
# Needs java >= 17 (JAVA_HOME or PATH), mvn for `fetch`, python3 for the probes.
# Environment: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m), KAFKA_START_TIMEOUT
# (seconds, default 90), KAFKA_STOP_TIMEOUT (seconds, default 30).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_HOME_DIR="$REPO_ROOT/.kafka"
LIB_DIR="$KAFKA_HOME_DIR/lib"
POM="$SCRIPT_DIR/pom.xml"
STAMP="$LIB_DIR/.fetched"
PYTHON="${PYTHON:-python3}"

die() {
    echo "apache-kafka: $*" >&2
    exit 1
}

usage() {
    sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        die "no java found: install a JDK >= 17 or set JAVA_HOME"
    fi
}

pom_digest() {
    sha256sum "$POM" | cut -d' ' -f1
}

cmd_fetch() {
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_digest)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
    mkdir -p "$KAFKA_HOME_DIR"
    local tmp="$KAFKA_HOME_DIR/lib.tmp.$$"
    rm -rf "$tmp"
    local mvn_log="$KAFKA_HOME_DIR/fetch.log"
    echo "apache-kafka: fetching broker jars into $LIB_DIR" >&2
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail -n 40 "$mvn_log" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (log: $mvn_log)"
    fi
    pom_digest >"$tmp/.fetched"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
}

check_port() {
    if ! [[ "${1:-}" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
        die "bad or missing PORT: '${1:-}'"
    fi
}

free_port() {
    "$PYTHON" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Exit 0 when 127.0.0.1:$1 answers a Kafka ApiVersions (v0) request without error.
kafka_answers() {
    "$PYTHON" - "$1" <<'PY'
import socket, struct, sys

port = int(sys.argv[1])
client = b"apache-kafka.sh"
body = struct.pack(">hhih", 18, 0, 7, len(client)) + client  # ApiVersions v0
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 10:
            chunk = s.recv(10 - len(head))
            if not chunk:
                sys.exit(1)
            head += chunk
except OSError:
    sys.exit(1)
_size, corr, err = struct.unpack(">iih", head)
sys.exit(0 if corr == 7 and err == 0 else 1)
PY
}

pid_file() { echo "$KAFKA_HOME_DIR/kafka-$1.pid"; }
log_file() { echo "$KAFKA_HOME_DIR/kafka-$1.log"; }

# Print the pid of our broker on PORT if it is running, else nothing.
running_pid() {
    local pf pid
    pf="$(pid_file "$1")"
    [[ -f "$pf" ]] || return 0
    pid="$(cat "$pf")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
        echo "$pid"
    fi
}

# The SASL_SSL listener of `start ... --sasl-ssl`: SASL_SSL_PORT is empty when none.
SASL_SSL_PORT=""
KEYSTORE=""
TRUSTSTORE=""
USERS_FILE=""
CLIENT_AUTH="required"
SCRAM_ARGS=()
PLAIN_USERS=()
MECHANISMS=()

abs_path() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

parse_start_options() {
    while (($#)); do
        case "$1" in
        --sasl-ssl | --keystore | --truststore | --users | --client-auth)
            (($# >= 2)) || die "$1 needs a value"
            case "$1" in
            --sasl-ssl) SASL_SSL_PORT="$2" ;;
            --keystore) KEYSTORE="$2" ;;
            --truststore) TRUSTSTORE="$2" ;;
            --users) USERS_FILE="$2" ;;
            --client-auth) CLIENT_AUTH="$2" ;;
            esac
            shift 2
            ;;
        *) die "unknown option for start: '$1'" ;;
        esac
    done
    if [[ -z "$SASL_SSL_PORT" ]]; then
        [[ -z "$KEYSTORE$TRUSTSTORE$USERS_FILE" ]] ||
            die "--keystore, --truststore and --users go with --sasl-ssl PORT"
        return 0
    fi
    check_port "$SASL_SSL_PORT"
    [[ -r "$KEYSTORE" ]] || die "--sasl-ssl needs --keystore, a readable PEM file (key and chain)"
    [[ -r "$TRUSTSTORE" ]] || die "--sasl-ssl needs --truststore, a readable PEM CA file"
    KEYSTORE="$(abs_path "$KEYSTORE")"
    TRUSTSTORE="$(abs_path "$TRUSTSTORE")"
    [[ "$CLIENT_AUTH" =~ ^(required|requested|none)$ ]] ||
        die "--client-auth is required, requested or none, not '$CLIENT_AUTH'"
    MECHANISMS=(SCRAM-SHA-256 SCRAM-SHA-512)
    [[ -n "$USERS_FILE" ]] || return 0
    [[ -r "$USERS_FILE" ]] || die "--users: cannot read '$USERS_FILE'"
    local mech name password rest n=0
    while read -r mech name password rest || [[ -n "$mech" ]]; do
        n=$((n + 1))
        [[ -z "$mech" || "$mech" == \#* ]] && continue
        # Kept to characters that need no quoting in --add-scram nor in JAAS.
        [[ -z "$rest" && "$name" =~ ^[A-Za-z0-9._~-]+$ && "$password" =~ ^[A-Za-z0-9._~-]+$ ]] ||
            die "--users line $n: expected MECHANISM NAME PASSWORD, of [A-Za-z0-9._~-]"
        case "$mech" in
        SCRAM-SHA-256 | SCRAM-SHA-512)
            SCRAM_ARGS+=(--add-scram "$mech=[name=$name,password=$password]")
            ;;
        PLAIN)
            ((${#PLAIN_USERS[@]})) || MECHANISMS+=(PLAIN)
            PLAIN_USERS+=("user_$name=\"$password\"")
            ;;
        *) die "--users line $n: '$mech' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" ;;
        esac
    done <"$USERS_FILE"
}

write_config() {
    local port="$1" cport="$2" data="$3"
    local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    local advertised="PLAINTEXT://127.0.0.1:$port"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [[ -n "$SASL_SSL_PORT" ]]; then
        listeners+=",SASL_SSL://127.0.0.1:$SASL_SSL_PORT"
        advertised+=",SASL_SSL://localhost:$SASL_SSL_PORT"
        protocols+=",SASL_SSL:SASL_SSL"
    fi
    cat >"$data/server.properties" <<EOF
# Written by scripts/kafka/apache-kafka.sh: one KRaft node, broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$data/logs
metadata.log.dir=$data/metadata
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.flush.interval.messages=9223372036854775807
EOF
    if [[ -n "$SASL_SSL_PORT" ]]; then
        local mechanisms scram=org.apache.kafka.common.security.scram.ScramLoginModule
        mechanisms="$(
            IFS=,
            echo "${MECHANISMS[*]}"
        )"
        cat >>"$data/server.properties" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$TRUSTSTORE
listener.name.sasl_ssl.ssl.client.auth=$CLIENT_AUTH
listener.name.sasl_ssl.sasl.enabled.mechanisms=$mechanisms
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram required;
EOF
        if ((${#PLAIN_USERS[@]})); then
            echo "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${PLAIN_USERS[*]};" \
                >>"$data/server.properties"
        fi
    fi
    cat >"$data/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

cmd_start() {
    local port="${1:-}"
    check_port "$port"
    shift
    parse_start_options "$@"
    local pid
    pid="$(running_pid "$port")"
    [[ -z "$pid" ]] || die "a broker from this script already runs on port $port (pid $pid); stop it first"
    if kafka_answers "$port"; then
        die "something already answers Kafka on 127.0.0.1:$port"
    fi
    cmd_fetch
    local java data log cport cluster_id
    java="$(java_bin)"
    data="$KAFKA_HOME_DIR/data-$port"
    log="$(log_file "$port")"
    cport="$(free_port)"
    rm -rf "$data"
    mkdir -p "$data"
    write_config "$port" "$cport" "$data"

    local -a heap jvm
    read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    jvm=(
        "${heap[@]}"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$data/log4j2.properties"
        -cp "$LIB_DIR/*"
    )
    local t0=$SECONDS
    : >"$log"
    # What `StorageTool random-uuid` prints (16 random bytes, base64url without
    # padding, never starting with '-'), without a JVM start of its own.
    cluster_id="$("$PYTHON" -c '
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not u.startswith("-"):
        print(u)
        break')"
    if ! "$java" "${jvm[@]}" kafka.tools.StorageTool format --standalone \
        --cluster-id "$cluster_id" --config "$data/server.properties" \
        ${SCRAM_ARGS[@]+"${SCRAM_ARGS[@]}"} >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "StorageTool format failed (log: $log)"
    fi

    nohup "$java" "${jvm[@]}" kafka.Kafka "$data/server.properties" >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pid_file "$port")"

    local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
    until kafka_answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pid_file "$port")"
            echo "---- tail of $log ----" >&2
            tail -n 60 "$log" >&2
            die "broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            echo "---- tail of $log ----" >&2
            tail -n 60 "$log" >&2
            cmd_stop "$port" >/dev/null 2>&1 || true
            die "broker did not answer on 127.0.0.1:$port within ${KAFKA_START_TIMEOUT:-90}s"
        fi
        sleep 0.5
    done
    echo "apache-kafka: broker up on 127.0.0.1:$port (pid $pid, controller :$cport," \
        "$((SECONDS - t0))s, log $log)" >&2
    if [[ -n "$SASL_SSL_PORT" ]]; then
        echo "apache-kafka: SASL_SSL on localhost:$SASL_SSL_PORT (${MECHANISMS[*]})" >&2
    fi
    echo "127.0.0.1:$port"
}

cmd_stop() {
    local port="${1:-}"
    check_port "$port"
    local pid pf
    pf="$(pid_file "$port")"
    pid="$(running_pid "$port")"
    if [[ -z "$pid" ]]; then
        rm -f "$pf"
        echo "apache-kafka: no broker of ours on port $port" >&2
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "apache-kafka: pid $pid ignored SIGTERM, killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$pf"
    rm -rf "$KAFKA_HOME_DIR/data-$port"
    echo "apache-kafka: stopped broker on port $port (pid $pid)" >&2
}

cmd_status() {
    local port="${1:-}"
    check_port "$port"
    local pid
    pid="$(running_pid "$port")"
    if [[ -n "$pid" ]] && kafka_answers "$port"; then
        echo "running on 127.0.0.1:$port (pid $pid)"
    elif [[ -n "$pid" ]]; then
        echo "pid $pid alive but 127.0.0.1:$port does not answer"
        return 1
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
fetch) cmd_fetch ;;
start)
    shift
    cmd_start "$@"
    ;;
stop) cmd_stop "${2:-}" ;;
status) cmd_status "${2:-}" ;;
*) usage ;;
esac
