#!/usr/bin/env bash
# The bundled models on one GPU: the full profile's hijacking experiments for both bundled models (the
# sample with the control schemes and ranks, its views, the known-fact view) in one process, and the
# causal tests (heads, defence) in another beside it (the first is mostly CPU-bound planning, the second
# GPU-bound), each into its own folder; the report is re-assembled on the CPU from the folders.
#   setsid nohup bash benchmarks/gpu/llm.sh hijack &   /   ... llm.sh mechanism &
source "$(dirname "$0")/env.sh"
cd $REPO
bash benchmarks/gpu/install_models.sh > $LOGS/install.log 2>&1 || { touch $W/${1}_DONE; exit 1; }
case $1 in
  hijack) IDS=${LLM_IDS:-fig1,hijack-sample,fig2a,fig2b,appB-reverse,appB-associated,appB-table,atlas,hijack-known}
          DIR=$R ;;
  mechanism) IDS=mechanism; DIR=$W/mech ;;
esac
s=$(date +%s)
am reproduce --profile full --device cuda --only $IDS --counterfact $CF --out $DIR > $LOGS/$1.log 2>&1
echo "$1 exit=$? wall_s=$(( $(date +%s) - s ))" >> $LOGS/$1.log
touch $W/${1}_DONE
