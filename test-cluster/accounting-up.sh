#!/bin/bash
# The accounting variant of the stand-in: `accounting-up.sh` gives the cluster of cluster-up.sh a
# slurmdbd backed by MariaDB (Debian's packages), so `sacct` answers as on a site with accounting,
# and memory limits enforced by cgroups (task/cgroup, ConstrainRAMSpace), so a job over its --mem
# is killed by the kernel and ends OUT_OF_MEMORY. `accounting-up.sh down` puts the default stand-in
# back (no accounting, task/none, as on many clusters): it stops slurmdbd and MariaDB, removes
# cgroup.conf and lets cluster-up.sh rewrite slurm.conf and restart the daemons.
# Both restart slurmctld and slurmd: run them only under the e2e lock (/tmp/riviera-e2e.lock).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CUSER=${ACC_USER:-rivuser}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
CGROUP_CONF=/etc/slurm/cgroup.conf
MARK="# riviera accounting variant"
RUN=/run/riviera-accounting
alive() { pgrep -x -r R,S,D,I "$1" >/dev/null 2>&1; }
# Daemons get none of this script's open files: started under flock, they would otherwise hold the
# e2e lock for as long as they live (slurmdbd and MariaDB keep what they inherit).
# Started in the background by one fork, which then becomes the daemon.
detached() {
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      n=${fd##*/}
      [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null
    done
    exec setsid "$@"
  ) &
}

stop_pid() {  # stop_pid NAME: TERM the live process of that name and wait for it
  local p
  p=$(pgrep -x -r R,S,D,I "$1" | head -n 1) || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 40); do [ -d "/proc/$p" ] && ! grep -q '^[^)]*) Z' "/proc/$p/stat" 2>/dev/null || return 0; sleep 0.25; done
}

if [ "${1:-up}" = down ]; then
  stop_pid slurmdbd
  stop_pid mariadbd
  [ -f "$CGROUP_CONF" ] && grep -qF "$MARK" "$CGROUP_CONF" && rm -f "$CGROUP_CONF"
  rm -f "$DBD_CONF"
  # cluster-up.sh finds slurm.conf changed, writes its own back and restarts both daemons.
  bash "$HERE/cluster-up.sh" >/dev/null
  echo "accounting down: $(grep '^AccountingStorageType' "$CONF")"
  exit 0
fi
[ "${1:-up}" = up ] || { echo "usage: $0 [up|down]" >&2; exit 2; }
[ -f "$CONF" ] || { echo "accounting-up: run cluster-up.sh first" >&2; exit 1; }

# --- MariaDB and slurmdbd from Debian (a fresh machine installs them once)
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] || [ ! -x /usr/sbin/slurmdbd ]; then
  apt-get update -qq >/dev/null
  # No init system here: keep the packages' scripts from starting services; this script starts them.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server slurmdbd >/dev/null || { rm -f /usr/sbin/policy-rc.d; exit 1; }
  rm -f /usr/sbin/policy-rc.d
fi
install -d -m 755 -o mysql -g mysql /run/mysqld
install -d -m 700 "$RUN"
if ! alive mariadbd; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  detached /usr/sbin/mariadbd --user=mysql --socket=/run/mysqld/mysqld.sock --skip-networking=0 --bind-address=127.0.0.1 \
    >/var/log/mariadb-accounting.log 2>&1
  for _ in $(seq 1 60); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
fi
mariadb -e 'select 1' >/dev/null || { echo "accounting-up: MariaDB did not come up (/var/log/mariadb-accounting.log)" >&2; exit 1; }
# The database password lives only in slurmdbd.conf (root-only) and the database.
[ -f "$RUN/dbpass" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$RUN/dbpass"; chmod 600 "$RUN/dbpass"; }
PASS=$(cat "$RUN/dbpass")
mariadb <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
umask 077
cat > "$DBD_CONF.tmp" <<CFG
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd-acceptance.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$PASS
CFG
mv -f "$DBD_CONF.tmp" "$DBD_CONF"
umask 022
if ! alive slurmdbd; then
  detached slurmdbd
  for _ in $(seq 1 60); do /usr/bin/sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
fi

# --- slurm.conf: accounting through slurmdbd; memory a consumable resource (--mem becomes the job's
# cgroup limit) enforced by cgroups; cluster-up.sh's file otherwise
CLUSTER=$(sed -n 's/^ClusterName=//p' "$CONF")
NEW=$(mktemp)
sed -e "s|^AccountingStorageType=.*|AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nJobAcctGatherFrequency=5|" \
    -e 's|^JobAcctGatherType=.*|JobAcctGatherType=jobacct_gather/cgroup|' \
    -e 's|^TaskPlugin=.*|TaskPlugin=task/cgroup|' \
    -e 's|^ProctrackType=.*|ProctrackType=proctrack/cgroup|' \
    -e 's|^SelectTypeParameters=.*|SelectTypeParameters=CR_Core_Memory|' "$CONF" > "$NEW"
printf '%s\nCgroupPlugin=cgroup/v1\nCgroupAutomount=yes\nConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=0\n' "$MARK" > "$CGROUP_CONF"
chmod 644 "$CGROUP_CONF"
/usr/bin/sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
/usr/bin/sacctmgr -i add account riviera Cluster="$CLUSTER" Description=stand-in Organization=riviera >/dev/null 2>&1 || true
for u in root "$CUSER"; do /usr/bin/sacctmgr -i add user "$u" Account=riviera Cluster="$CLUSTER" >/dev/null 2>&1 || true; done
if ! cmp -s "$NEW" "$CONF" || ! alive slurmctld || ! alive slurmd; then
  install -m 644 "$NEW" "$CONF"
  stop_pid slurmd; stop_pid slurmctld
  detached slurmctld; sleep 1; detached slurmd
fi
rm -f "$NEW"
for _ in $(seq 1 40); do
  sinfo -h -p short-gpu -o %t 2>/dev/null | grep -qE 'idle|mix|alloc' && break
  scontrol update nodename="$(hostname)" state=resume >/dev/null 2>&1 || true; sleep 0.5
done
sinfo -h -p short-gpu -o %t | grep -qE 'idle|mix|alloc' || { echo "accounting-up: Slurm did not come back (see /var/log/slurm/)" >&2; exit 1; }
echo "accounting up: $(/usr/bin/sacct -n -X -S now-1minutes -o JobID >/dev/null && echo 'sacct answers'); $(grep '^TaskPlugin' "$CONF")"
