/*
 * Flotilla pause: the process that holds a pod sandbox's namespaces open.
 *
 * Mirrors Kubernetes' build/pause/linux/pause.c: it sleeps forever, exits 0 on
 * SIGINT/SIGTERM (so StopPodSandbox is quick), and, being PID 1 of the pod's
 * PID namespace when namespaces are shared, reaps zombies on SIGCHLD.
 * Built with `gcc -static` so the image needs nothing but this file.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) {
  psignal(signo, "shutting down, got signal");
  exit(0);
}

static void sigreap(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("flotilla-pause 1\n");
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr, "warning: pause should be the first process\n");
  }

  struct sigaction down = {.sa_handler = sigdown};
  if (sigaction(SIGINT, &down, NULL) < 0) return 1;
  if (sigaction(SIGTERM, &down, NULL) < 0) return 2;
  struct sigaction reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGCHLD, &reap, NULL) < 0) return 3;

  for (;;) pause();
  return 42; /* unreachable */
}
