/* bench/floor.c: the floor of a start with copy-on-write volumes (make bench, row 1).
 *
 *   floor LOWER:UPPER:WORK:MERGED[:volatile]... -- RUNTIME ARGS...
 *
 * Mounts each overlay LOWER/UPPER/WORK on MERGED with mount(2) (`volatile` adds overlayfs's
 * option of that name, as ocivol mounts a volatile volume), runs RUNTIME ARGS... (runc run of a
 * bundle that binds the MERGED directories) as a child and waits for it, unmounts them with
 * umount2(2) and exits with the runtime's status: what any wrapper must do at the least, with
 * one process between the caller and the runtime as ocivol has. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_OVERLAYS 16

static void usage(void) {
    fprintf(stderr, "usage: floor LOWER:UPPER:WORK:MERGED[:volatile]... -- RUNTIME ARGS...\n");
    exit(2);
}

int main(int argc, char **argv) {
    char *merged[MAX_OVERLAYS], *volatile_work[MAX_OVERLAYS];
    int n = 0, i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        char *lower = strtok(argv[i], ":"), *upper = strtok(NULL, ":"), *work = strtok(NULL, ":");
        char *target = strtok(NULL, ":"), *flag = strtok(NULL, ":");
        if (!target || n == MAX_OVERLAYS)
            usage();
        char opts[4096];
        snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper, work,
                 flag && strcmp(flag, "volatile") == 0 ? ",volatile" : "");
        if (mount("floor", target, "overlay", MS_NOSUID | MS_NODEV, opts) != 0) {
            perror("floor: mount");
            while (n > 0)
                umount2(merged[--n], 0);
            return 1;
        }
        volatile_work[n] = flag && strcmp(flag, "volatile") == 0 ? work : NULL;
        merged[n++] = target;
    }
    if (i + 1 >= argc)
        usage();
    int status = 1 << 8;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[i + 1], argv + i + 1);
        perror("floor: exec");
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        perror("floor: run");
        status = 1 << 8;
    }
    for (int k = n - 1; k >= 0; k--) {
        if (umount2(merged[k], 0) != 0) {
            perror("floor: umount");
            return 1;
        }
        /* overlayfs refuses a work directory a volatile mount used until this goes (ocivol
         * empties the volatile volume's work directory after its last user). */
        if (volatile_work[k]) {
            char path[4096];
            snprintf(path, sizeof path, "%s/work/incompat/volatile/dirty", volatile_work[k]);
            unlink(path);
            snprintf(path, sizeof path, "%s/work/incompat/volatile", volatile_work[k]);
            rmdir(path);
            snprintf(path, sizeof path, "%s/work/incompat", volatile_work[k]);
            rmdir(path);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
