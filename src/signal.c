/* SPDX-License-Identifier: MIT */
/*
 * The kick signal (kernel analog: the reschedule IPI).
 *
 * The signal's disposition is process-wide, so this file keeps the one piece
 * of process-global state of the library: how many VMs use which signal, so
 * that the handler is installed by the first and removed by the last (which
 * puts back the disposition the first found, and only if vcpureq's handler
 * is still the one installed).  It is
 * touched only by vcpureq_vm_create()/destroy(), under a mutex.
 *
 * The handler is trivial by design (no locks, no library calls, only two
 * relaxed stores through per-thread pointers set before the signal is
 * unblocked): it sets kvm_run->immediate_exit (kick mechanism
 * IMMEDIATE_EXIT) and the bound vCPU's "kicked" flag, which the thread
 * backend's guest callback polls.  Both are cleared before IN_GUEST_MODE is
 * published.  With the SIGMASK mechanism the signal is blocked in the vCPU
 * thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so the kernel turns
 * a pending kick into an immediate -EINTR from KVM_RUN and the handler
 * never runs there.  SA_ONSTACK: a vCPU thread that runs on a small stack
 * with an alternate signal stack keeps its stack.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_users[_NSIG];
/* The disposition vcpureq found when the first VM took the signal (always
 * the default action: acquire refuses a handled or ignored signal, but its
 * sa_mask and flags are the application's): put back by the last release,
 * and only while vcpureq's handler is still installed. */
static struct sigaction sig_saved[_NSIG];

VCPUREQ__TLS uint8_t *vcpureq__immediate_exit;

static void kick_handler(int sig)
{
	struct vcpureq_vcpu *self = vcpureq__self;
	uint8_t *ie = vcpureq__immediate_exit;

	(void)sig;
	/* Relaxed: read by this same thread (program order with a handler
	 * that interrupted it), or by the kernel at the start of KVM_RUN on
	 * this thread. */
	if (ie)
		__atomic_store_n(ie, 1, __ATOMIC_RELAXED);
	if (self)
		atomic_store_explicit(&self->kicked, 1, memory_order_relaxed);
}

int vcpureq__signal_acquire(int sig)
{
	struct sigaction old, sa;
	int r = 0;

	/* Only signals nobody else gives a meaning to: a fault signal
	 * (SIGSEGV, SIGBUS, ...) made the kick signal would loop on a real
	 * fault; SIGCHLD, SIGINT, SIGPIPE, ... belong to the process. */
	if (!((sig >= SIGRTMIN && sig <= SIGRTMAX) || sig == SIGUSR1 ||
	      sig == SIGUSR2))
		return vcpureq__errf(-EINVAL,
				     "kick signal %d is not safe to repurpose: use SIGRTMIN..SIGRTMAX (%d..%d), SIGUSR1 or SIGUSR2",
				     sig, SIGRTMIN, SIGRTMAX);
	pthread_mutex_lock(&sig_lock);
	if (sig_users[sig] > 0) {
		/* Another VM installed the handler: share it, unless the
		 * application has since replaced it (kicks would then run
		 * the application's handler and set no immediate_exit). */
		if (!vcpureq__signal_is_ours(sig)) {
			r = vcpureq__errf(-EBUSY,
					  "kick signal %d: the application replaced vcpureq's handler after another VM took the signal; choose another with opts.kick_signal",
					  sig);
			goto out;
		}
		sig_users[sig]++;
		goto out;
	}
	if (sigaction(sig, NULL, &old) < 0) {
		r = vcpureq__errf(-errno, "sigaction(%d): %s", sig, strerror(errno));
		goto out;
	}
	if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL) {
		r = vcpureq__errf(-EBUSY,
				  "kick signal %d already has a handler (or is ignored) in this application; choose another with opts.kick_signal",
				  sig);
		goto out;
	}
	if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction) {
		r = vcpureq__errf(-EBUSY,
				  "kick signal %d already has a handler in this application; choose another with opts.kick_signal",
				  sig);
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigfillset(&sa.sa_mask);
	/* No SA_RESTART: a kick interrupts the guest callback's blocking
	 * system calls (thread backend). */
	sa.sa_flags = SA_ONSTACK;
	if (sigaction(sig, &sa, NULL) < 0) {
		r = vcpureq__errf(-errno, "sigaction(%d): %s", sig, strerror(errno));
		goto out;
	}
	sig_saved[sig] = old;
	sig_users[sig] = 1;
out:
	pthread_mutex_unlock(&sig_lock);
	return r;
}

void vcpureq__signal_release(int sig)
{
	pthread_mutex_lock(&sig_lock);
	/* The last VM puts back what was there before the first one took the
	 * signal, but only over vcpureq's own handler: a handler the
	 * application installed since stays (resetting it to SIG_DFL would
	 * make its next raise() of the signal kill the process). */
	if (sig_users[sig] > 0 && --sig_users[sig] == 0) {
		if (vcpureq__signal_is_ours(sig))
			sigaction(sig, &sig_saved[sig], NULL);
	}
	pthread_mutex_unlock(&sig_lock);
}

int vcpureq__signal_drain(int sig, bool all)
{
	static const struct timespec zero = { 0, 0 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, sig);
	/*
	 * One sigtimedwait() after a kicked exit: at most one signal is sent
	 * per guest-mode instance (the CAS winner's), so one is normally all
	 * there is, and a queued extra (a real-time signal from an older
	 * instance) costs at most one spurious -EINTR later.  unbind drains
	 * them all.  Returns how many were taken.
	 */
	int n = 0;

	while (sigtimedwait(&set, NULL, &zero) == sig) {
		n++;
		if (!all)
			break;
	}
	return n;
}

bool vcpureq__signal_pending(int sig)
{
	sigset_t set;

	return sigpending(&set) == 0 && sigismember(&set, sig) == 1;
}

bool vcpureq__signal_is_ours(int sig)
{
	struct sigaction cur;

	return sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
	       cur.sa_handler == kick_handler;
}
