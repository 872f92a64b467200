#!/usr/bin/env bash
# Install the carried wheels once and move the carried GGUF pieces (.gpu/g*/part*) out of the repo copy.
source "$(dirname "$0")/env.sh"
if [ -d .gpu/whl ] && [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl && touch /tmp/site/.done
  cp .gpu/whl/COMMIT $W/COMMIT 2>/dev/null
  [ -f $CF ] || gunzip -c .gpu/whl/counterfact_reconstructed.json.gz > $CF
fi
mkdir -p $W/parts && for f in .gpu/g*/part*; do [ -f "$f" ] && cp "$f" $W/parts/; done
ls -l $W/parts; nvidia-smi -L; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
