#!/bin/sh
# Write the seed corpus for the `decode` target: every well-formed and every malformed packet
# of the codec's test tables, one file each, into fuzz/corpus/decode (gitignored).
# Run from anywhere; it builds the codec's tests once.
set -eu
cd "$(dirname "$0")/../../.."
cargo test -p edgeplane-codec --test encode_decode --test malformed -- --ignored --exact write_fuzz_seeds
