#!/usr/bin/env bash
# The synthetic (LCA) experiments of the full profile, theory rows included; its wall time is the
# bar (<= 15 min on one GPU). Run beside llm.sh on the same GPU when time is short (say so).
source "$(dirname "$0")/env.sh"
cd $REPO
IDS=$(python3 -c "from assocmem.experiments.registry import default_registry as r; print(','.join(e.id for e in r() if not e.uses_llm))")
s=$(date +%s)
am reproduce --profile full --device cuda --only $IDS --out $W/full_lca > $LOGS/lca.log 2>&1
echo "lca_exit=$? lca_wall_s=$(( $(date +%s) - s ))" >> $LOGS/lca.log
touch $W/LCA_DONE
