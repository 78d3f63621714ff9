#!/bin/sh
# Runs the ledger on a three-node JetStream cluster on this machine, every
# port on 127.0.0.1 only: three stock nats-server processes from
# deploy/nats/n1.conf..n3.conf (routes, the ledger's operator and accounts
# from `ledger credentials server-config`, sync_interval: always), then
# `ledger serve --nats ... --replicas 3`. Ctrl-C (or SIGTERM to this
# script) stops the ledger, then the servers, by the process ids this
# script started.
#
# Environment (defaults in brackets):
#   LEDGER_BIN        the ledger binary [ledger on PATH]
#   NATS_SERVER_BIN   the nats-server binary [nats-server on PATH]
#   LEDGER_DATA       the ledger's data directory [./ledger-data]
#   LEDGER_HTTP       address of the HTTP API [127.0.0.1:8080]
#   LEDGER_N1_PORT..LEDGER_N3_PORT              client ports [4222..4224]
#   LEDGER_N1_ROUTE_PORT..LEDGER_N3_ROUTE_PORT  route ports [6222..6224]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ledger=${LEDGER_BIN:-ledger}
natsd=${NATS_SERVER_BIN:-nats-server}
data=${LEDGER_DATA:-./ledger-data}
run="$data/cluster"

export LEDGER_NATS_HOST=127.0.0.1
export LEDGER_N1_PORT=${LEDGER_N1_PORT:-4222} LEDGER_N2_PORT=${LEDGER_N2_PORT:-4223} LEDGER_N3_PORT=${LEDGER_N3_PORT:-4224}
export LEDGER_N1_ROUTE_PORT=${LEDGER_N1_ROUTE_PORT:-6222} LEDGER_N2_ROUTE_PORT=${LEDGER_N2_ROUTE_PORT:-6223} LEDGER_N3_ROUTE_PORT=${LEDGER_N3_ROUTE_PORT:-6224}
export LEDGER_ROUTE_1="nats-route://127.0.0.1:$LEDGER_N1_ROUTE_PORT"
export LEDGER_ROUTE_2="nats-route://127.0.0.1:$LEDGER_N2_ROUTE_PORT"
export LEDGER_ROUTE_3="nats-route://127.0.0.1:$LEDGER_N3_ROUTE_PORT"

mkdir -p "$run"
# The keys and the users' .creds files stay in $data/credentials; the
# servers get the operator's and the accounts' JWTs only.
"$ledger" credentials init --data "$data" >/dev/null
"$ledger" credentials server-config --data "$data" >"$run/ledger-accounts.conf"
cp "$here/nats/n1.conf" "$here/nats/n2.conf" "$here/nats/n3.conf" "$run/"

pids=""
stop() {
	for pid in $pids; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}
trap stop EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do
	export "LEDGER_N${i}_STORE=$run/n$i"
	"$natsd" -c "$run/n$i.conf" >"$run/n$i.log" 2>&1 &
	pids="$pids $!"
done

# Wait (at most 30 s) until each server says it is ready for clients.
for i in 1 2 3; do
	tries=0
	until grep -q "Server is ready" "$run/n$i.log" 2>/dev/null; do
		tries=$((tries + 1))
		if [ "$tries" -gt 300 ]; then
			echo "nats-server n$i is not ready after 30 s; its log:" >&2
			cat "$run/n$i.log" >&2
			exit 1
		fi
		sleep 0.1
	done
done

urls="nats://127.0.0.1:$LEDGER_N1_PORT,nats://127.0.0.1:$LEDGER_N2_PORT,nats://127.0.0.1:$LEDGER_N3_PORT"
echo "nats-server n1..n3 on $urls (logs in $run/n*.log)" >&2
# serve waits, bounded, for the cluster to elect its leaders; it creates
# the LEDGER stream and every bucket on three replicas.
"$ledger" serve --data "$data" --nats "$urls" --creds "$data/credentials" --replicas 3 \
	--http "${LEDGER_HTTP:-127.0.0.1:8080}" "$@" &
# The ledger stops first (it lets acknowledged work finish), then the servers.
pids="$! $pids"
wait "${pids%% *}"
