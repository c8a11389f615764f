#!/usr/bin/env bash
# Download one of the standard Pix2Pix / CycleGAN datasets into datasets/NAME (see datasets/README.md).
set -euo pipefail

PIX2PIX_NAMES=(facades cityscapes maps edges2shoes edges2handbags night2day)
CYCLEGAN_NAMES=(apple2orange summer2winter_yosemite horse2zebra monet2photo cezanne2photo ukiyoe2photo
                vangogh2photo maps cityscapes facades iphone2dslr_flower)
PIX2PIX_URL="http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
CYCLEGAN_URL="http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
PYTHON="${PYTHON:-python3}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
PROG="$(basename "$0")"

usage() {
    cat <<EOF
Usage: $PROG [options] NAME [DEST]

Download a standard Pix2Pix or CycleGAN dataset and unpack it into DEST
(default: $REPO_ROOT/datasets/NAME).

pix2pix (paired, side-by-side A|B, from $PIX2PIX_URL/NAME.tar.gz):
  ${PIX2PIX_NAMES[*]}
CycleGAN (unpaired trainA/trainB/testA/testB, from $CYCLEGAN_URL/NAME.zip):
  ${CYCLEGAN_NAMES[*]}

facades and maps exist in both collections: the pix2pix (paired) archive is the
default; --cyclegan fetches the unpaired one (default DEST datasets/NAME_cyclegan).
cityscapes is refused: its licence requires registering at
https://www.cityscapes-dataset.com and downloading from there.

Options:
  --base-url URL  fetch URL/NAME.tar.gz (pix2pix) or URL/NAME.zip (CycleGAN)
                  instead of the public host (file:// URLs work)
  --cyclegan      for facades/maps, fetch the CycleGAN (unpaired) version
  --force         download again and replace an existing, non-empty DEST
  -h, --help      show this help

Exit status: 0 done (or DEST already present), 1 download/unpack failed,
2 usage error, unknown or refused NAME.
EOF
}

die() {  # die STATUS MESSAGE...
    local status="$1"
    shift
    echo "$PROG: error: $*" >&2
    exit "$status"
}

contains() {  # contains WORD LIST...
    local word="$1" item
    shift
    for item in "$@"; do
        [[ "$item" == "$word" ]] && return 0
    done
    return 1
}

name="" dest="" base_url="" force=0 cyclegan=0
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --force) force=1 ;;
        --cyclegan) cyclegan=1 ;;
        --base-url)
            (($# >= 2)) || die 2 "--base-url needs a value"
            base_url="$2"
            shift
            ;;
        --base-url=*) base_url="${1#--base-url=}" ;;
        --) shift; break ;;
        -*) die 2 "unknown option '$1' (see --help)" ;;
        *)
            if [[ -z "$name" ]]; then name="$1"
            elif [[ -z "$dest" ]]; then dest="$1"
            else die 2 "too many arguments (see --help)"
            fi
            ;;
    esac
    shift
done
while (($#)); do  # arguments after --
    if [[ -z "$name" ]]; then name="$1"
    elif [[ -z "$dest" ]]; then dest="$1"
    else die 2 "too many arguments (see --help)"
    fi
    shift
done

valid_names="pix2pix: ${PIX2PIX_NAMES[*]}; CycleGAN: ${CYCLEGAN_NAMES[*]}"
[[ -n "$name" ]] || { usage >&2; exit 2; }

if ((cyclegan)); then
    contains "$name" "${CYCLEGAN_NAMES[@]}" || die 2 "'$name' is not a CycleGAN dataset. Valid names: $valid_names"
    kind=cyclegan
elif contains "$name" "${PIX2PIX_NAMES[@]}"; then
    kind=pix2pix
elif contains "$name" "${CYCLEGAN_NAMES[@]}"; then
    kind=cyclegan
else
    die 2 "unknown dataset '$name'. Valid names: $valid_names"
fi

if [[ "$name" == cityscapes ]]; then
    die 2 "cityscapes is not downloaded by this script: its licence requires registering at" \
        "https://www.cityscapes-dataset.com and downloading the data from there yourself."
fi

if [[ "$kind" == pix2pix ]]; then
    ext="tar.gz"
    base_url="${base_url:-$PIX2PIX_URL}"
else
    ext="zip"
    base_url="${base_url:-$CYCLEGAN_URL}"
fi
url="${base_url%/}/$name.$ext"

if [[ -z "$dest" ]]; then
    if [[ "$kind" == cyclegan ]] && contains "$name" "${PIX2PIX_NAMES[@]}"; then
        dest="$REPO_ROOT/datasets/${name}_cyclegan"
    else
        dest="$REPO_ROOT/datasets/$name"
    fi
fi
dest_name="$(basename "$dest")"
case "$dest_name" in
    . | .. | /) die 2 "DEST must name a folder, got '$dest'" ;;
esac
if [[ -e "$dest" && ! -d "$dest" ]]; then
    die 2 "DEST '$dest' exists and is not a folder"
fi
if [[ -d "$dest" && -n "$(ls -A "$dest")" && "$force" -eq 0 ]]; then
    echo "$dest already exists and is not empty; nothing to do (use --force to download again)."
    exit 0
fi

command -v curl >/dev/null || die 1 "curl is needed to download datasets"
if [[ "$ext" == zip ]]; then
    command -v "$PYTHON" >/dev/null || die 1 "$PYTHON is needed to unpack .zip archives (set PYTHON=...)"
else
    command -v tar >/dev/null || die 1 "tar is needed to unpack .tar.gz archives"
fi

parent="$(dirname "$dest")"
mkdir -p "$parent"
parent="$(cd "$parent" && pwd)"
dest="$parent/$dest_name"

tmp_archive="" tmp_dir="" old_dir=""
cleanup() {
    local status=$?
    [[ -n "$tmp_archive" ]] && rm -f "$tmp_archive"
    [[ -n "$tmp_dir" ]] && rm -rf "$tmp_dir"
    if [[ -n "$old_dir" ]]; then
        # Failed between moving the old DEST aside and putting the new one in place: restore it.
        if [[ ! -e "$dest" && -e "$old_dir/$dest_name" ]]; then
            mv "$old_dir/$dest_name" "$dest" || true
        fi
        rm -rf "$old_dir"
    fi
    return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Temp files live next to DEST so the final rename stays on one filesystem.
tmp_archive="$(mktemp "$parent/.$dest_name.download.XXXXXX")"
tmp_dir="$(mktemp -d "$parent/.$dest_name.unpack.XXXXXX")"

echo "Downloading $url" >&2
if [[ -t 2 ]]; then progress=(--progress-bar); else progress=(--silent --show-error); fi
if ! curl -fL --retry 3 --retry-delay 2 --connect-timeout 30 "${progress[@]}" -o "$tmp_archive" "$url"; then
    die 1 "download failed: $url"
fi

echo "Unpacking into $dest" >&2
if [[ "$ext" == zip ]]; then
    "$PYTHON" -m zipfile -e "$tmp_archive" "$tmp_dir" || die 1 "cannot unpack $url (not a valid zip?)"
else
    tar -xzf "$tmp_archive" -C "$tmp_dir" --no-same-owner || die 1 "cannot unpack $url (not a valid tar.gz?)"
fi
rm -f "$tmp_archive"
tmp_archive=""
rm -rf "$tmp_dir/__MACOSX"

shopt -s nullglob dotglob
entries=("$tmp_dir"/*)
shopt -u nullglob dotglob
if ((${#entries[@]} == 0)); then
    die 1 "archive $url is empty"
elif ((${#entries[@]} == 1)) && [[ -d "${entries[0]}" && ! -L "${entries[0]}" ]]; then
    src="${entries[0]}"  # the usual layout: one top-level folder named after the dataset
else
    src="$tmp_dir"
fi
if [[ "$src" == "$tmp_dir" ]]; then
    chmod "$(printf '%o' $((0777 & ~0$(umask))))" "$src"  # mktemp -d made it 0700
fi

if [[ -e "$dest" ]]; then  # empty, or --force: move it aside, restored by cleanup if the swap fails
    old_dir="$(mktemp -d "$parent/.$dest_name.old.XXXXXX")"
    mv "$dest" "$old_dir/$dest_name"
fi
mv "$src" "$dest"
[[ "$src" == "$tmp_dir" ]] && tmp_dir=""
if [[ -n "$old_dir" ]]; then
    rm -rf "$old_dir"
    old_dir=""
fi

count="$(find "$dest" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.bmp' \
    -o -iname '*.tif' -o -iname '*.tiff' -o -iname '*.webp' \) | wc -l | tr -d ' ')"
echo "$name ($kind): $count images in $dest"
