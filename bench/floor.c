/* bench/floor.c: the floor of a copy-on-write volume's start cost (make bench, row 1).
 *
 *   floor LOWER UPPER WORK MERGED RUNTIME ARGS...
 *
 * Mounts the overlay LOWER/UPPER/WORK on MERGED with mount(2), runs RUNTIME ARGS... (runc run of
 * a bundle that binds MERGED) as a child and waits for it, unmounts MERGED with umount2(2) and
 * exits with the runtime's status: what any wrapper must do at the least, with one process
 * between the caller and the runtime as ocivol has. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: floor LOWER UPPER WORK MERGED RUNTIME ARGS...\n");
        return 2;
    }
    char opts[4096];
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", argv[1], argv[2], argv[3]);
    if (mount("floor", argv[4], "overlay", MS_NOSUID | MS_NODEV, opts) != 0) {
        perror("floor: mount");
        return 1;
    }
    int status = 1;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[5], argv + 5);
        perror("floor: exec");
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        perror("floor: run");
        status = 1 << 8;
    }
    if (umount2(argv[4], 0) != 0) {
        perror("floor: umount");
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
