#!/usr/bin/env bash
# The synthetic (LCA) experiments of the full profile on GPU 0 alone; its wall time is the issue-4 bar.
source "$(dirname "$0")/env.sh"
cd $REPO
s=$(date +%s)
CUDA_VISIBLE_DEVICES=0 am reproduce --profile full --device cuda --only $LCA_IDS --out $R > $LOGS/lca.log 2>&1
echo "lca_exit=$? lca_wall_s=$(( $(date +%s) - s ))" >> $LOGS/lca.log
touch $W/LCA_DONE
