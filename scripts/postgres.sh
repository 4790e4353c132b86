#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, run as an
# unprivileged user, listening on 127.0.0.1 only, everything (data, socket, log) in DIR.
#
#   scripts/postgres.sh start PORT DIR   initdb (trust auth, user `burnrate`) and start;
#                                        prints the DSN: postgresql://burnrate@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop PORT DIR    stop it (DIR is left for the caller to remove)
#
# PostgreSQL refuses to run as root; as root the binaries run as the `postgres` user the
# package creates (PG_USER overrides), which then owns DIR. PG_BIN names the directory of
# initdb and pg_ctl (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
cmd=${1:-}; port=${2:-}; dir=${3:-}
if [[ -z $cmd || -z $port || -z $dir ]]; then
    echo "usage: $0 start|stop PORT DIR" >&2
    exit 2
fi
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [[ -z $bin || ! -x $bin/pg_ctl ]]; then
    echo "postgres.sh: no PostgreSQL binaries (install Debian's postgresql package, or set PG_BIN)" >&2
    exit 1
fi
as=()
if [[ $(id -u) == 0 ]]; then
    user=${PG_USER:-postgres}
    id "$user" >/dev/null 2>&1 || { echo "postgres.sh: no user $user to run PostgreSQL as" >&2; exit 1; }
    as=(runuser -u "$user" --)
fi
data=$dir/data
case $cmd in
start)
    mkdir -p "$dir"
    if ((${#as[@]})); then
        chown "${as[2]}" "$dir"
        "${as[@]}" test -w "$dir" || {
            echo "postgres.sh: $dir is not reachable by user ${as[2]} (a parent directory is private)" >&2
            exit 1
        }
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        "${as[@]}" "$bin/initdb" -D "$data" -U burnrate --auth=trust --no-sync \
            -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # fsync off: a test server's data is thrown away, and it keeps the tests quick.
    "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://burnrate@127.0.0.1:$port/postgres"
    ;;
stop)
    [[ -f $data/postmaster.pid ]] || exit 0
    "${as[@]}" "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop PORT DIR" >&2
    exit 2
    ;;
esac
