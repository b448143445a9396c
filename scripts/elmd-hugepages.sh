#!/usr/bin/env bash
# elmd-hugepages.sh MODEL.gguf [--apply] — how many 2 MiB huge pages elmd needs to keep MODEL
# on explicit huge pages (docs/daemon.md), and, with --apply (root), reserves them now by
# raising vm.nr_hugepages by what is missing. Pages already free (e.g. for another model) count.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 MODEL.gguf [--apply]" >&2
  exit 2
fi
pool=/sys/kernel/mm/hugepages/hugepages-2048kB
if [ ! -d "$pool" ]; then
  echo "$0: this kernel has no 2 MiB huge page pool" >&2
  exit 1
fi
size=$(stat -c %s "$1")
# the tensor data is a little smaller than the file; one page of slack covers the alignment
need=$(( (size + 2097151) / 2097152 + 1 ))
free=$(( $(cat "$pool/free_hugepages") - $(cat "$pool/resv_hugepages") ))
total=$(cat /proc/sys/vm/nr_hugepages)
missing=$(( need > free ? need - free : 0 ))
echo "$1: $((size >> 20)) MiB -> $need huge pages of 2 MiB; $free free of $total reserved"
if [ "$missing" -eq 0 ]; then
  echo "enough pages are free"
  exit 0
fi
echo "to reserve: sysctl vm.nr_hugepages=$((total + missing))" \
     "(and in /etc/sysctl.d/ to keep it after a reboot)"
if [ "${2:-}" = "--apply" ]; then
  echo $((total + missing)) > /proc/sys/vm/nr_hugepages
  got=$(( $(cat "$pool/free_hugepages") - $(cat "$pool/resv_hugepages") ))
  echo "now $got free"
  [ "$got" -ge "$need" ] || { echo "$0: memory too fragmented; reserve at boot" >&2; exit 1; }
fi
