#!/usr/bin/env bash
# Private Redis and PostgreSQL instances in a folder, on loopback, for
# scripts/run and scripts/test. Source this file; nothing runs on its own.
#
#   slk_start_redis DIR PORT     redis-server, noeviction, no persistence
#   slk_stop_redis DIR PORT
#   slk_start_pg DIR PORT [DB] [--fast]
#                                cluster in DIR/pgdata (created when missing),
#                                database DB (default slotlock) created when
#                                missing; --fast turns fsync off (tests only)
#   slk_stop_pg DIR
#   slk_pg_recreate_db PORT DB   drop (forcing out sessions) and create DB
#   slk_redis_flush PORT
#   slk_free_ports N             prints N distinct free loopback TCP ports
#
# Functions return non-zero with a message on stderr instead of exiting, so
# the caller's trap decides what to clean up.

slk__say() { echo "slotlock: $*" >&2; }

# Newest installed PostgreSQL server binaries (Debian keeps them per major
# version under /usr/lib/postgresql/<major>/bin, off PATH).
slk_pg_bindir() {
    local dir best="" best_ver=0 ver
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] || continue
        ver=${dir#/usr/lib/postgresql/}
        ver=${ver%%/*}
        ver=${ver%%.*}
        case "$ver" in '' | *[!0-9]*) continue ;; esac
        if [ "$ver" -gt "$best_ver" ]; then
            best_ver=$ver
            best=$dir
        fi
    done
    if [ -z "$best" ]; then
        slk__say "no PostgreSQL server found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        return 1
    fi
    printf '%s\n' "$best"
}

slk_free_ports() {
    python3 - "${1:-1}" <<'EOF'
import socket, sys
# Hold every socket open until all are chosen so the ports are distinct.
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
slk_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Polls COMMAND... every 0.1 s for at most SECONDS; true once it succeeds.
slk__wait_for() {
    local tries=$(($1 * 10))
    shift
    while [ "$tries" -gt 0 ]; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

slk__redis_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

slk_start_redis() {
    local dir=$1 port=$2
    mkdir -p "$dir" || return 1
    dir=$(cd "$dir" && pwd) || return 1
    # A previous run killed with SIGKILL may have left its instance behind.
    slk_stop_redis "$dir" "$port" 2>/dev/null || true
    if slk_port_busy "$port"; then
        slk__say "port $port is already in use; cannot start Redis there"
        return 1
    fi
    if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --maxmemory-policy noeviction --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null; then
        slk__say "redis-server failed to start; see $dir/redis.log"
        tail -n 20 "$dir/redis.log" >&2 2>/dev/null
        return 1
    fi
    if ! slk__wait_for 10 slk__redis_ping "$port"; then
        slk__say "Redis on port $port did not answer PING within 10 s; $dir/redis.log:"
        tail -n 20 "$dir/redis.log" >&2 2>/dev/null
        return 1
    fi
}

slk__pid_alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

slk_stop_redis() {
    local dir=$1 port=$2 pid=""
    if [ -f "$dir/redis.pid" ]; then
        pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
    fi
    if slk__pid_alive "$pid"; then
        # Only shut down the instance whose pid file is ours, never whatever
        # else may listen on the port.
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
        if ! slk__wait_for 5 eval '! kill -0 '"$pid"; then
            kill "$pid" 2>/dev/null || true
            slk__wait_for 5 eval '! kill -0 '"$pid" || kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/redis.pid"
    return 0
}

slk_redis_flush() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" flushall 2>/dev/null)" = "OK" ] || {
        slk__say "Redis FLUSHALL on port $1 failed"
        return 1
    }
}

# Runs a command as the postgres user from a directory it can enter (the
# caller's cwd may be under /root), in a locale that always exists.
slk__as_postgres() {
    (cd / && runuser -u postgres -- env LC_ALL=C.UTF-8 LANG=C.UTF-8 "$@")
}

slk__psql() {
    local port=$1
    shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

slk_start_pg() {
    local dir=$1 port=$2 db=${3:-slotlock} fast=${4:-} bindir opts
    if [ "$db" = "--fast" ]; then
        db=slotlock
        fast=--fast
    fi
    bindir=$(slk_pg_bindir) || return 1
    if ! id postgres >/dev/null 2>&1; then
        slk__say "the postgres user does not exist (apt-get install postgresql)"
        return 1
    fi
    mkdir -p "$dir" || return 1
    dir=$(cd "$dir" && pwd) || return 1
    # PostgreSQL refuses to run as root; the folder and its parents must be
    # reachable by the postgres user.
    chown -R postgres: "$dir" || return 1
    chmod 700 "$dir"
    if ! slk__as_postgres test -w "$dir"; then
        slk__say "the postgres user cannot reach $dir (a parent folder is not traversable)"
        return 1
    fi
    slk_stop_pg "$dir" 2>/dev/null || true
    if slk_port_busy "$port"; then
        slk__say "port $port is already in use; cannot start PostgreSQL there"
        return 1
    fi
    if [ ! -f "$dir/pgdata/PG_VERSION" ]; then
        if ! slk__as_postgres "$bindir/initdb" -D "$dir/pgdata" -A trust -U postgres \
            -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
            slk__say "initdb failed:"
            tail -n 20 "$dir/initdb.log" >&2
            return 1
        fi
    fi
    opts="-p $port -c listen_addresses=127.0.0.1"
    # Unix socket paths are limited to about 100 bytes; TCP is what we use.
    if [ "${#dir}" -lt 80 ]; then
        opts="$opts -k $dir"
    else
        opts="$opts -c unix_socket_directories="
    fi
    if [ "$fast" = "--fast" ]; then
        opts="$opts -c fsync=off -c full_page_writes=off"
    fi
    if ! slk__as_postgres "$bindir/pg_ctl" -D "$dir/pgdata" -o "$opts" \
        -l "$dir/pg.log" -w -t 60 start >/dev/null 2>&1; then
        slk__say "PostgreSQL failed to start; $dir/pg.log:"
        tail -n 20 "$dir/pg.log" >&2 2>/dev/null
        return 1
    fi
    if ! slk__wait_for 10 slk__psql "$port" -d postgres -c 'select 1'; then
        slk__say "PostgreSQL on port $port does not accept connections"
        return 1
    fi
    slk_pg_create_db "$port" "$db"
}

slk_pg_create_db() {
    local port=$1 db=$2 exists
    exists=$(slk__psql "$port" -d postgres -At \
        -c "select 1 from pg_database where datname = '$db'") || return 1
    if [ "$exists" != "1" ]; then
        slk__psql "$port" -d postgres -c "create database \"$db\"" || {
            slk__say "could not create database $db"
            return 1
        }
    fi
}

slk_pg_recreate_db() {
    local port=$1 db=$2
    slk__psql "$port" -d postgres -c "drop database if exists \"$db\" with (force)" || {
        slk__say "could not drop database $db"
        return 1
    }
    slk__psql "$port" -d postgres -c "create database \"$db\"" || {
        slk__say "could not create database $db"
        return 1
    }
}

slk_stop_pg() {
    local dir=$1 bindir pid=""
    [ -f "$dir/pgdata/postmaster.pid" ] || return 0
    bindir=$(slk_pg_bindir) || return 1
    if slk__as_postgres "$bindir/pg_ctl" -D "$dir/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1; then
        return 0
    fi
    # pg_ctl could not stop it (or it was not running and the pid file is
    # stale): make sure the postmaster named in the pid file is gone.
    pid=$(head -n 1 "$dir/pgdata/postmaster.pid" 2>/dev/null || true)
    if slk__pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "postgres" ]; then
        kill -QUIT "$pid" 2>/dev/null || true
        slk__wait_for 5 eval '! kill -0 '"$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    return 0
}
