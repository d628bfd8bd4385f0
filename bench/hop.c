/* bench/hop.c: the floor of any process between an engine and runc (make bench, rows 1 and 8).
 *
 *   hop RUNTIME ARGS...   execs RUNTIME ARGS... at once: a wrapper that does nothing
 *   hop                   exits 0 at once: a hook that does nothing
 *
 * Built static with glibc as ocivol is, so it pays what every such process pays at its start
 * (on the benchmark machine mostly glibc's CPU feature and cache detection, whose CPUID
 * instructions each exit to the hypervisor) and nothing else. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 0;
    execv(argv[1], argv + 1);
    perror("hop: exec");
    return 127;
}
