#!/bin/sh
# Render the IVR prompts of prompts.yaml to 8 kHz mono 16-bit WAV files with
# espeak-ng (Mandarin voice "cmn") and sox.
#
# Usage: render-prompts.sh PROMPTS_YAML SOUNDS_DIR [MOH_DIR]
#   SOUNDS_DIR gets <name>.wav for each "name: text" line of PROMPTS_YAML;
#   MOH_DIR (optional) gets a copy of queue_wait.ulaw, the music-on-hold class
#   "default" of musiconhold.conf.
# Runs inside the Asterisk root: the sandbox's chroot and the docker image.
set -eu

prompts=$1
out=$2
moh=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

grep -E '^[A-Za-z0-9_]+:' "$prompts" | while IFS= read -r line; do
    name=${line%%:*}
    text=$(printf '%s' "${line#*:}" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
        -e 's/^"\(.*\)"$/\1/')
    espeak-ng -v cmn -s 150 -w "$tmp/$name.wav" "$text"
    # Telephone format; normalise to -3 dBFS so every prompt is equally loud.
    sox "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" gain -n -3
    # Also as G.711 u-law: on a u-law call Asterisk plays this one without
    # transcoding each frame (it picks the cheapest format of a sound).
    sox "$out/$name.wav" -t ul "$out/$name.ulaw"
    echo "rendered $out/$name.wav and .ulaw"
done

if [ -n "$moh" ]; then
    mkdir -p "$moh"
    cp "$out/queue_wait.ulaw" "$moh/queue_wait.ulaw"
fi
