#!/usr/bin/env bash
# Prints the resident memory of the running test bed, per component and in all.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ps -eo rss=,args= | awk -v dir="$BED_DIR/kwok/clusters/" '
  index($2, dir) == 1 { n = split($2, p, "/"); comp = p[n]; rss[comp] += $1; total += $1 }
  END { for (c in rss) printf "%-26s %6d MiB\n", c, rss[c] / 1024; printf "%-26s %6d MiB\n", "total", total / 1024 }'
