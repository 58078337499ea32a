#!/usr/bin/env bash
# What a device call sends, and a checkout slim enough to send.
#
#   bash scripts/gpu_tree.sh size [CARRIED...]  MiB a call would send: the tracked and the untracked-not-ignored
#                                               files, plus the carried paths (e.g. .gpu); exit 1 over 64 MiB
#   bash scripts/gpu_tree.sh slim               hold the CPU boards (published and staged) and the pages out of
#                                               what is sent
#   bash scripts/gpu_tree.sh restore            put them back (after the call, before anything is committed)
#
# Why: the device tool sends every tracked file, and the 64 MiB it takes must also hold .gpu/ (the data pack and
# wheels, about 20 MiB, and the runs carried between windows, .gpu/unfinished, up to 36 MiB). The CPU boards and
# their pages alone weigh over 50 MiB and grow with every board; a GPU window needs none of them, only the code
# and submissions/standard. `slim` takes docs/, republish/<board> and every submissions/<board> but standard out
# of git's index (the files stay on disk, nothing is deleted) and ignores them in .git/info/exclude, so they are
# neither counted nor sent; until `restore` (the index entries back from HEAD, the exclude lines removed), a
# pre-commit hook refuses commits, which would otherwise delete the boards.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((64 * 1024 * 1024))
git_dir=$(git rev-parse --git-dir)
marker="$git_dir/gpu-slim"
exclude="$git_dir/info/exclude"
begin='# gpu-slim: held out of a device call by scripts/gpu_tree.sh (restore removes these lines)'
end='# gpu-slim end'

bytes_sent() {  # tracked and untracked-not-ignored files, then each carried path
  { git ls-files -z --cached --others --exclude-standard; for path in "$@"; do
      if [ -e "$path" ]; then find "$path" -type f -print0; else echo "no $path here (carried: counted as 0)" >&2; fi
    done; } |
    xargs -0 -r stat -c %s 2>/dev/null | awk '{ total += $1 } END { print total + 0 }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

report() {  # prints what a call would send; fails over the limit
  local sent
  sent=$(bytes_sent "$@")
  echo "a device call would send $(mib "$sent") (limit 64 MiB)$([ -e "$marker" ] && echo ', slimmed')"
  if [ "$sent" -gt "$limit" ]; then
    echo "over the limit: $([ -e "$marker" ] && echo 'carry less' || echo "run 'bash scripts/gpu_tree.sh slim'") before the call" >&2
    return 1
  fi
}

case "${1:-}" in
  size)
    shift
    report "$@"
    ;;
  slim)
    if [ -e "$marker" ]; then echo "already slimmed; 'bash scripts/gpu_tree.sh restore' puts the boards back" >&2; exit 1; fi
    held=()
    [ -d docs ] && held+=(docs)
    for board in submissions/*/ republish/*/; do  # the published boards and those being (re)made
      [ -d "$board" ] || continue
      board=${board%/}
      [ "$board" != submissions/standard ] && held+=("$board")
    done
    [ ${#held[@]} -gt 0 ] || { echo "nothing to hold out: no docs/ and no CPU board under submissions/" >&2; exit 1; }
    if [ -n "$(git status --porcelain -- "${held[@]}")" ]; then
      echo "uncommitted changes under ${held[*]}: commit or undo them first, then slim" >&2
      exit 1
    fi
    hook="$git_dir/hooks/pre-commit"
    if [ ! -e "$hook" ]; then
      mkdir -p "$git_dir/hooks"
      printf '%s\n' '#!/bin/sh' \
        "# installed by scripts/gpu_tree.sh: a commit while the boards are held out of the index would delete them" \
        'if [ -e "$(git rev-parse --git-dir)/gpu-slim" ]; then' \
        '  echo "the checkout is slimmed for a device call: run bash scripts/gpu_tree.sh restore, then commit" >&2' \
        '  exit 1' 'fi' > "$hook"
      chmod +x "$hook"
    elif ! grep -q gpu-slim "$hook"; then
      echo "a pre-commit hook of your own is installed: do not commit until 'bash scripts/gpu_tree.sh restore'" >&2
    fi
    printf '%s\n' "${held[@]}" > "$marker"
    mkdir -p "$(dirname "$exclude")"
    { echo "$begin"; printf '/%s/\n' "${held[@]}"; echo "$end"; } >> "$exclude"
    git rm -r -q --cached -- "${held[@]}"
    echo "held out of a device call (on disk, out of the index): ${held[*]}"
    report .gpu || true
    ;;
  restore)
    if [ ! -e "$marker" ]; then echo "not slimmed: nothing to restore"; exit 0; fi
    mapfile -t held < "$marker"
    git reset -q HEAD -- "${held[@]}"
    awk -v b="$begin" -v e="$end" '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' "$exclude" \
      > "$exclude.tmp" && mv "$exclude.tmp" "$exclude"
    rm -f "$marker"
    if [ -n "$(git status --porcelain -- "${held[@]}")" ]; then
      echo "restored, but git sees changes under ${held[*]}: check 'git status' before committing" >&2
      exit 1
    fi
    echo "restored: ${held[*]}"
    ;;
  *)
    echo "usage: bash scripts/gpu_tree.sh size [CARRIED...] | slim | restore" >&2
    exit 2
    ;;
esac
