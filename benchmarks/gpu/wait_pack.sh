#!/usr/bin/env bash
# Wait up to $1 seconds for the markers $2... (in $W), then pack the run folders (no chunks, no partial
# runs, no weights) into $OUT in pieces of at most 15 MB (at most 8 files come back from a call).
source "$(dirname "$0")/env.sh"
end=$(( $(date +%s) + ${1:-0} )); shift
while [ $(date +%s) -lt $end ]; do ok=1; for m in "$@"; do [ -f $W/$m ] || ok=0; done; [ $ok = 1 ] && break; sleep 5; done
ls $W; for l in $LOGS/*.log; do echo "--- $l"; tail -4 $l; done
[ -n "$OUT" ] || exit 0
tar czf $W/llm.tgz -C $W --exclude='chunks' --exclude='.partial' --exclude='*.safetensors' $(cd $W; ls -d full mech logs 2>/dev/null)
split -b 15000000 -d $W/llm.tgz $OUT/llm.tgz.
ls -l $OUT
