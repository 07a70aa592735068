#!/bin/bash
# total CPU ticks of the private cluster (postmaster + reaped + live children)
PM=$(head -1 /tmp/costpg/data/postmaster.pid)
t=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[12]+f[13]+f[14]+f[15]}' /proc/$PM/stat)
for c in $(ps --ppid $PM -o pid=); do
  v=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[12]+f[13]}' /proc/$c/stat 2>/dev/null); t=$((t + ${v:-0}))
done
echo $t
