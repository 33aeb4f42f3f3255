#!/bin/sh
# Makes one tier's copy of the engine into a single relocatable object that can sit beside the
# other tiers' copies in libdeformrt.so (README, "How the library is built"):
#   1. ld -r joins the objects SwiftPM linked into the tier's own libdeformrt.so (the C API and
#      everything below it);
#   2. objcopy renames every symbol the copy defines: the entry points drt_X (and
#      deformrt_tier_refuse) become deformrt_<tier>__drt_X for the dispatcher, everything else gets
#      the suffix .tier_<tier> (local symbols too, so a disassembly shows which copy any
#      function belongs to; Tests/python/test_cpu_dispatch.py relies on that). Undefined symbols
#      (libc, OpenBLAS, the Swift runtime, which the final link adds once) keep their names. Renaming rather than localising also renames the
#      COMDAT groups' signatures, so the linker does not fold one tier's copy of a shared generic
#      specialisation into another's.
# Usage: tier-object.sh TIER SCRATCH_PATH OUT.o
set -eu
tier=$1
scratch=$2
out=$3
# The objects SwiftPM linked into the tier's single-tier libdeformrt.so (a glob of *.o would also
# pick up objects of source files deleted since the scratch path was made).
list="$scratch/release/deformrt.product/Objects.LinkFileList"
if [ ! -f "$list" ]; then echo "tier-object.sh: $list missing: build the deformrt product there first" >&2; exit 1; fi
objects=$(cat "$list")
ld -r -o "$out.joined" $objects
# One --redefine-sym per symbol in a response file: some Swift symbols have spaces in their names
# ("associated conformance ...", "symbolic ..."), which the one-pair-per-line --redefine-syms file
# cannot hold; in a response file a backslash escapes them.
nm --defined-only "$out.joined" | awk -v tier="$tier" '
  {
    name = $0
    sub(/^[0-9a-f]+ [A-Za-z] /, "", name)
    # "=" separates the old and the new name; only local string-literal labels (.L.str...) have one.
    if (index(name, "=") > 0) {
      if ($2 ~ /[A-Z]/) { print "tier-object.sh: cannot rename global symbol " name > "/dev/stderr"; exit 1 }
      next
    }
    if (name in seen) next
    seen[name] = 1
    if (name ~ /^drt_/ || name == "deformrt_tier_refuse") renamed = "deformrt_" tier "__" name
    else renamed = name ".tier_" tier
    pair = name "=" renamed
    gsub(/[\\ \t"\x27]/, "\\\\&", pair)
    print "--redefine-sym " pair
  }' > "$out.renames" || exit 1
grep -q "^--redefine-sym drt_session_run=" "$out.renames" || { echo "tier-object.sh: $scratch has no drt_session_run" >&2; exit 1; }
objcopy @"$out.renames" "$out.joined" "$out"
rm -f "$out.joined"
