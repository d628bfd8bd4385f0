/* bench/pair.c: times commands side by side, interleaved (make bench, rows 1, 6 and 8).
 *
 *   pair [-n RUNS] [-w WARMUP] [-p PREPARE] -o OUT.json -c NAME CMD [-c NAME CMD]...
 *
 * Each round runs every command once, the first command of round r being command r mod k, so
 * that each command follows every other one equally often; RUNS rounds are counted after
 * WARMUP rounds that are not. Slow drift of the machine (another tenant's load, the disk's
 * writeback) then hits every command alike, where a tool that runs all of one command's runs
 * before the next command's (hyperfine) lets it land on one of them. A CMD is split on spaces
 * and run without a shell (looked up in PATH unless it names a path), with stdin, stdout and
 * stderr on /dev/null, as `hyperfine -N` does; PREPARE, if given, runs through `sh -c` before
 * every run of every command, untimed.
 *
 * What is timed is a run from the fork to the command's exit, what an engine waits for. Work a
 * command leaves to a detached child (ocivol's deferred sync and unmount, its trash) goes on
 * after that: this program is the children's subreaper (PR_SET_CHILD_SUBREAPER) and waits,
 * untimed, until every descendant has ended before it starts the next run, so that no command
 * is charged for the work another one left behind (at most 10 s: a container left created by a
 * PREPARE is a descendant until a run starts it). The time until the last descendant ended is
 * written too ("settled"), so that what is deferred stays visible.
 *
 * OUT.json: [{"command": NAME, "times": [s...], "settled": [s...]}...], the shape bench/lib.sh
 * reads. Exits 1 (and writes nothing) if any run fails, as hyperfine does. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_COMMANDS 8
#define MAX_ARGS 128

struct command {
    const char *name;
    char *argv[MAX_ARGS];
    double *times, *settled;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void) {
    fprintf(stderr, "usage: pair [-n RUNS] [-w WARMUP] [-p PREPARE] -o OUT.json -c NAME CMD...\n");
    exit(2);
}

/* Runs argv with stdio on /dev/null; returns its wait status, or -1 if it could not start. */
static int run(char *const argv[], pid_t *pid_out) {
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
        execvp(argv[0], argv);
        _exit(127);
    }
    *pid_out = pid;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

static volatile sig_atomic_t timed_out;
static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
}

/* Waits for every descendant left behind (reparented to us as their subreaper), for at most
 * SETTLE_SECONDS: a container that a command leaves running (a created one, before `start`) is
 * a descendant too, and is reaped after a later run instead. Returns whether all had ended. */
#define SETTLE_SECONDS 10
static int settle(void) {
    timed_out = 0;
    alarm(SETTLE_SECONDS);
    int all = 0;
    for (;;) {
        if (waitpid(-1, NULL, 0) > 0)
            continue;
        if (errno == ECHILD)
            all = 1;
        if (errno != EINTR || timed_out)
            break;
    }
    alarm(0);
    return all;
}

/* Reaps what has ended already, without waiting. */
static void reap(void) {
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_array(FILE *f, const double *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.9f", i ? "," : "", v[i]);
    fputc(']', f);
}

int main(int argc, char **argv) {
    int runs = 20, warmup = 2, k = 0;
    const char *out = NULL, *prepare = NULL;
    struct command cmds[MAX_COMMANDS];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
            prepare = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "-c") == 0 && i + 2 < argc && k < MAX_COMMANDS) {
            struct command *c = &cmds[k++];
            c->name = argv[++i];
            int a = 0;
            for (char *w = strtok(argv[++i], " "); w; w = strtok(NULL, " "))
                if (a < MAX_ARGS - 1)
                    c->argv[a++] = w;
            c->argv[a] = NULL;
            if (a == 0)
                usage();
        } else
            usage();
    }
    if (!out || k == 0 || runs < 1 || warmup < 0)
        usage();
    for (int c = 0; c < k; c++) {
        cmds[c].times = calloc(runs, sizeof(double));
        cmds[c].settled = calloc(runs, sizeof(double));
        if (!cmds[c].times || !cmds[c].settled)
            return 1;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("pair: PR_SET_CHILD_SUBREAPER");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    char *prep_argv[] = {"/bin/sh", "-c", (char *)prepare, NULL};
    for (int r = 0; r < warmup + runs; r++) {
        for (int j = 0; j < k; j++) {
            struct command *c = &cmds[(r + j) % k];
            if (prepare) {
                pid_t p;
                if (run(prep_argv, &p) != 0) {
                    fprintf(stderr, "pair: the prepare command failed: %s\n", prepare);
                    return 1;
                }
                reap();
            }
            pid_t pid;
            double start = now();
            int status = run(c->argv, &pid);
            double done = now();
            int all = settle();
            double settled = now();
            if (!all)
                fprintf(stderr, "pair: %s: descendants still ran %d s after it ended\n", c->name,
                        SETTLE_SECONDS);
            if (status != 0) {
                fprintf(stderr, "pair: %s: %s (wait status %d)\n", c->name,
                        status < 0 ? "could not run" : "failed", status);
                return 1;
            }
            if (r >= warmup) {
                c->times[r - warmup] = done - start;
                c->settled[r - warmup] = settled - start;
            }
        }
    }
    FILE *f = fopen(out, "w");
    if (!f) {
        perror(out);
        return 1;
    }
    fputc('[', f);
    for (int c = 0; c < k; c++) {
        fprintf(f, "%s{\"command\":", c ? "," : "");
        json_string(f, cmds[c].name);
        fputs(",\"times\":", f);
        json_array(f, cmds[c].times, runs);
        fputs(",\"settled\":", f);
        json_array(f, cmds[c].settled, runs);
        fputc('}', f);
    }
    fputs("]\n", f);
    return fclose(f) == 0 ? 0 : 1;
}
