/* bench/hop.c: the floor of any process between an engine and runc (make bench, rows 1 and 8).
 *
 *   hop RUNTIME ARGS...   execs RUNTIME ARGS... at once: a wrapper that does nothing
 *   hop                   exits 0 at once: a hook that does nothing
 *
 * Built static and, on x86_64, without a libc: its own _start makes the execve or exit system
 * call and nothing else, so it costs what any extra process costs (the kernel's fork, exec and
 * exit) and no more. A static glibc program in its place costs about 0.5 ms more on the benchmark
 * machine, all of it glibc's start-up (its CPU feature and cache detection: CPUID instructions,
 * each an exit to the hypervisor), which an earlier version of this floor included. */

#if defined(__x86_64__) && defined(HOP_NOLIBC)

static long syscall3(long n, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

#define SYS_write 1
#define SYS_execve 59
#define SYS_exit 60

__attribute__((noreturn, used)) void hop_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc >= 2) {
        syscall3(SYS_execve, (long)argv[1], (long)(argv + 1), (long)envp);
        static const char msg[] = "hop: exec failed\n";
        syscall3(SYS_write, 2, (long)msg, sizeof msg - 1);
        syscall3(SYS_exit, 127, 0, 0);
    }
    syscall3(SYS_exit, 0, 0, 0);
    __builtin_unreachable();
}

/* The kernel starts _start with the stack holding argc, argv..., NULL, envp..., NULL. */
__asm__(".globl _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call hop_main\n");

#else

#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 0;
    execv(argv[1], argv + 1);
    perror("hop: exec");
    return 127;
}

#endif
