#!/usr/bin/env bash
# The guest runtime's layers point one way (issue 11): fails when the module graph of guests/
# has a cycle. A module is one runtime file pair (rt/NAME.c + rt/NAME.h -> rt/NAME) or one guest
# program (NAME.c -> guest/NAME). Edges:
#   includes  rt/X or guest/X includes "Y.h"            -> X depends on rt/Y
#   symbols   object X references a global that Y defines -> X depends on Y   (nm: U/w vs T/D/B/R/W/V)
# entry.S is the CPU's entry point (reset vector, interrupt stubs, AP trampoline): its jumps into
# C are where execution starts, not dependencies, so its outgoing edges are not counted.
# Usage: check_layers.sh [--nm NM] [--includes SRC_DIR] [--objects OBJ...]
#   object names: <anything>rt_NAME.{c,S}.o -> rt/NAME, <anything>g_NAME.c.o -> guest/NAME.
# Prints "PASS: ..." and exits 0 when acyclic; prints each cycle and exits 1 otherwise.
set -euo pipefail

nm_tool=nm
src_dir=""
objs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nm) nm_tool="$2"; shift 2 ;;
    --includes) src_dir="$2"; shift 2 ;;
    --objects) shift; while [[ $# -gt 0 && "$1" != --* ]]; do objs+=("$1"); shift; done ;;
    *) echo "check_layers: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ -z "$src_dir" && ${#objs[@]} -eq 0 ]]; then
  echo "check_layers: nothing to check (give --includes and/or --objects)" >&2
  exit 2
fi

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
modules=0

module_of_source() {  # path under src_dir -> module
  local rel="${1#"$src_dir"/}" base
  base=$(basename "$rel")
  base="${base%.*}"
  if [[ "$rel" == rt/* ]]; then echo "rt/$base"; else echo "guest/$base"; fi
}

module_of_object() {
  local b
  b=$(basename "$1")
  b="${b%.o}"
  b="${b%.*}"  # .c / .S
  case "$b" in
    rt_* | *_rt_*) echo "rt/${b#*rt_}" ;;
    g_* | *_g_*) echo "guest/${b#*g_}" ;;
    *) echo "check_layers: cannot name the module of object '$1'" >&2; exit 2 ;;
  esac
}

if [[ -n "$src_dir" ]]; then
  shopt -s nullglob
  for f in "$src_dir"/rt/*.c "$src_dir"/rt/*.h "$src_dir"/*.c; do
    from=$(module_of_source "$f")
    while read -r inc; do
      to="rt/${inc%.h}"
      [[ "$to" != "$from" ]] && echo "$from $to" >>"$edges"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    echo "$from $from" >>"$edges"  # every module is a node, even without edges
    modules=$((modules + 1))
  done
fi

if [[ ${#objs[@]} -gt 0 ]]; then
  declare -A definer=()
  for o in "${objs[@]}"; do
    [[ -f "$o" ]] || { echo "check_layers: missing object '$o'" >&2; exit 2; }
    m=$(module_of_object "$o")
    while read -r _ type sym; do
      case "$type" in T | D | B | R | W | V | G | S | C) definer["$sym"]+="$m " ;; esac
    done < <("$nm_tool" "$o" | awk 'NF == 3')
  done
  for o in "${objs[@]}"; do
    m=$(module_of_object "$o")
    [[ "$m" == rt/entry ]] && continue
    modules=$((modules + 1))
    echo "$m $m" >>"$edges"
    while read -r type sym; do
      for d in ${definer["$sym"]:-}; do
        [[ "$d" != "$m" && "$d" != rt/entry ]] && echo "$m $d" >>"$edges"
      done
    done < <("$nm_tool" "$o" | awk 'NF == 2 && ($1 == "U" || $1 == "w" || $1 == "v")')
  done
fi

sort -u -o "$edges" "$edges"
# tsort orders "A B" as A before B and reports each loop on stderr.
if ! out=$(tsort "$edges" 2>&1 >/dev/null); then
  echo "FAIL: the guest runtime's dependencies have a cycle:"
  echo "$out" | sed -n 's/^tsort: //p' | grep -v 'input contains a loop' | sed 's/^/  in cycle: /'
  echo "edges (X Y: X depends on Y):"
  grep -v '^\(\S*\) \1$' "$edges" | sed 's/^/  /'
  exit 1
fi
n_edges=$(grep -vc '^\(\S*\) \1$' "$edges" || true)
echo "PASS: guest runtime layers are acyclic ($modules modules checked, $n_edges dependencies)"
