/* SPDX-License-Identifier: MIT */
/*
 * Misuse, faults and limits: each case is the regression test of a way the
 * library once hung, lost a kick or broke its contract.
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define REQ_WAIT VCPUREQ_ARCH_REQ_FLAGS(2, VCPUREQ_REQUEST_WAIT)
#define HANG_MS (20000 * h_time_scale())

static _Atomic uint64_t handled;

static int count_handler(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0)
		atomic_fetch_add(&handled, 1);
	if (vcpureq_check_request(REQ_WAIT, v) > 0)
		atomic_fetch_add(&handled, 1);
	return 0;
}

static bool wait_handled(uint64_t n)
{
	uint64_t end = h_now_ns() + (uint64_t)HANG_MS * 1000000u;

	while (atomic_load(&handled) < n)
		if (h_now_ns() > end)
			return false;
		else
			h_sleep_us(100);
	return true;
}

/*
 * The real-time signal queue is full (RLIMIT_SIGPENDING 0 in this process:
 * every queued signal fails, as when another process of the user filled
 * it).  A kick reports -EAGAIN instead of counting a signal that never
 * went; the vCPU stays IN_GUEST_MODE, so a WAIT does not hang on a lost
 * signal and the next kick, with room in the queue again, gets it out.
 */
TEST_BOTH(kick_signal_queue_full)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct rlimit old, none = { 0, 0 };
	struct vcpureq_stats s0, s1;
	struct vcpureq_vcpu *v;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	CHECK_EQ(getrlimit(RLIMIT_SIGPENDING, &old), 0);
	none.rlim_max = old.rlim_max;
	CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &none), 0);
	vcpureq_vcpu_stats(v, &s0, sizeof(s0));
	CHECK_EQ(vcpureq_request(REQ_A, v), -EAGAIN);
	CHECK(strstr(vcpureq_errmsg(), "RLIMIT_SIGPENDING") != NULL);
	vcpureq_vcpu_stats(v, &s1, sizeof(s1));
	CHECK_EQ(s1.signals_sent, s0.signals_sent); /* none went */
	CHECK_EQ(s1.requests_made - s0.requests_made, 1); /* it is made */
	CHECK(vcpureq_vcpu_mode(v) == VCPUREQ_IN_GUEST_MODE);
	/* A WAIT reports the failure, it does not wait forever. */
	CHECK_EQ(vcpureq_request(REQ_WAIT, v), -EAGAIN);
	CHECK_EQ(vcpureq_make_all_cpus_request(h.vm, REQ_WAIT), -EAGAIN);
	CHECK_EQ(atomic_load(&handled), 0);
	/* Room again: the next kick delivers, nothing was lost. */
	CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &old), 0);
	CHECK_EQ(vcpureq_vcpu_kick(v), 1);
	CHECK(wait_handled(2)); /* REQ_A and REQ_WAIT (coalesced) */
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/*
 * A transient EAGAIN from tgkill() (the real-time signal queue full for a
 * moment) is retried with a back-off before it is reported (kick.c,
 * send_kick_signal(): about 8 ms in all).  The queue is "full"
 * (RLIMIT_SIGPENDING 0); a watcher thread raises the limit again once the
 * requester is seen sleeping in the back-off (its /proc/self/task/<tid>/
 * syscall is nanosleep / clock_nanosleep, which it calls only after a
 * failed tgkill()), and the kick must then succeed.  The watcher runs
 * SCHED_FIFO where it may, so that a CPU hog does not make it miss the
 * back-off; a round it missed anyway (the kick reported -EAGAIN after a
 * back-off was seen) is run again, up to 5.  Without the retry no
 * back-off is ever seen and every round reports -EAGAIN.
 */
struct backoff_watch {
	pid_t tid;
	struct rlimit old;
	_Atomic int stop;
	_Atomic int saw_backoff;
	_Atomic int raised;
};

static bool in_backoff(pid_t tid)
{
	long nr = h_thread_syscall(tid);

	return nr == SYS_nanosleep || nr == SYS_clock_nanosleep;
}

static void *backoff_watch_main(void *arg)
{
	struct backoff_watch *w = arg;

	while (!atomic_load(&w->stop)) {
		if (in_backoff(w->tid)) {
			atomic_store(&w->saw_backoff, 1);
			if (setrlimit(RLIMIT_SIGPENDING, &w->old) == 0)
				atomic_store(&w->raised, 1);
			break;
		}
	}
	return NULL;
}

TEST_BOTH(kick_transient_eagain_retried)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct rlimit none = { 0, 0 };
	struct vcpureq_stats s0, s1;
	struct backoff_watch w;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	int round, r = 0;

	H_VM(&h, be, 1, H_SPIN, &o);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_spinning, &h, 0, HANG_MS));
	for (round = 1; round <= 5; round++) {
		struct sched_param sp = { .sched_priority = 1 };
		pthread_attr_t attr;
		pthread_t t;

		memset(&w, 0, sizeof(w));
		w.tid = gettid();
		CHECK_EQ(getrlimit(RLIMIT_SIGPENDING, &w.old), 0);
		none.rlim_max = w.old.rlim_max;
		CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
		CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &none), 0);
		pthread_attr_init(&attr);
		pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
		pthread_attr_setschedparam(&attr, &sp);
		if (pthread_create(&t, &attr, backoff_watch_main, &w))
			CHECK_EQ(pthread_create(&t, NULL, backoff_watch_main, &w),
				 0); /* not permitted: an ordinary thread */
		pthread_attr_destroy(&attr);
		vcpureq_vcpu_stats(v, &s0, sizeof(s0));
		r = vcpureq_request(REQ_A, v);
		atomic_store(&w.stop, 1);
		pthread_join(t, NULL);
		CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &w.old), 0);
		vcpureq_vcpu_stats(v, &s1, sizeof(s1));
		printf("round %d: kick %d, back-off seen %d, limit raised %d\n",
		       round, r, atomic_load(&w.saw_backoff),
		       atomic_load(&w.raised));
		if (r == 1) {
			/* Sent once, after the limit was raised. */
			CHECK_EQ(atomic_load(&w.raised), 1);
			CHECK_EQ(s1.signals_sent - s0.signals_sent, 1);
			break;
		}
		CHECK_EQ(r, -EAGAIN);
		CHECK_EQ(s1.signals_sent, s0.signals_sent);
		/* Reported: no signal went.  Without the retry no
		 * back-off ever starts; a back-off the watcher missed is
		 * load: the next round.  The request stays made: a kick
		 * with room again delivers it. */
		if (!atomic_load(&w.saw_backoff))
			fprintf(stderr, "round %d: -EAGAIN reported and no back-off seen (no retry?)\n",
				round);
		CHECK(vcpureq_vcpu_kick(v) >= 0);
		CHECK(wait_handled((uint64_t)round));
	}
	CHECK_EQ(r, 1);
	CHECK(wait_handled((uint64_t)round));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* SIGUSR1 is not queued: a full real-time queue does not stop it. */
TEST_BOTH(kick_signal_not_queued)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler,
				     .kick_signal = SIGUSR1 };
	struct rlimit old, none = { 0, 0 };
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	CHECK_EQ(getrlimit(RLIMIT_SIGPENDING, &old), 0);
	none.rlim_max = old.rlim_max;
	CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &none), 0);
	CHECK_EQ(vcpureq_request(REQ_WAIT, vcpureq_vm_vcpu(h.vm, 0)), 1);
	CHECK(wait_handled(1));
	CHECK_EQ(setrlimit(RLIMIT_SIGPENDING, &old), 0);
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* Only signals nobody else gives a meaning to may be the kick signal. */
static int open_with_signal(enum vcpureq_backend be, int sig)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm = NULL;
	int r;

	o.backend = be;
	o.kick_signal = sig;
	r = vcpureq_vm_open(&o, -1, &vm);
	if (!r)
		vcpureq_vm_free(vm);
	return r;
}

TEST(kick_signal_choice)
{
	static const int bad[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
				   SIGCHLD, SIGINT, SIGTERM, SIGPIPE, SIGALRM,
				   SIGKILL, SIGSTOP, SIGABRT };
	static const int good[] = { SIGUSR1, SIGUSR2 };
	size_t i;

	(void)be; /* the choice is backend-independent */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(open_with_signal(VCPUREQ_BACKEND_THREAD, bad[i]), -EINVAL);
		CHECK(strstr(vcpureq_errmsg(), "not safe to repurpose") != NULL);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_EQ(open_with_signal(VCPUREQ_BACKEND_THREAD, good[i]), 0);
	CHECK_EQ(open_with_signal(VCPUREQ_BACKEND_THREAD, SIGRTMIN), 0);
	CHECK_EQ(open_with_signal(VCPUREQ_BACKEND_THREAD, SIGRTMAX), 0);
	return 0;
}

/* VCPUREQ_ARCH_REQ() of a run-time number outside 0..55 never aliases a
 * generic request (249 + 8 and -7 + 8 were bit 1, VM_DEAD). */
TEST_BOTH(arch_req_out_of_range_refused)
{
	static const int bad[] = { 56, 57, 249, -7, -1, 1000 };
	struct vcpureq_stats st;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	size_t i;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		volatile int nr = bad[i];
		unsigned int req = VCPUREQ_ARCH_REQ(nr);

		CHECK_EQ(req, VCPUREQ_REQUEST_BAD_NR);
		CHECK_EQ(vcpureq_make_request(req, v), -EINVAL);
		CHECK_EQ(vcpureq_request(req, v), -EINVAL);
		CHECK_EQ(vcpureq_make_all_cpus_request(h.vm, req), -EINVAL);
		CHECK_EQ(vcpureq_make_all_cpus_request(
				 h.vm, VCPUREQ_ARCH_REQ_FLAGS(nr, VCPUREQ_REQUEST_WAIT)),
			 -EINVAL);
	}
	CHECK(!vcpureq_vm_is_dead(h.vm));
	vcpureq_vcpu_stats(v, &st, sizeof(st));
	CHECK_EQ(st.requests_made, 0);
	h_vm_destroy(&h);
	return 0;
}

/* A mask length near SIZE_MAX once wrapped to zero words (0 returned,
 * nothing made). */
TEST_BOTH(mask_bits_overflow_refused)
{
	uint64_t m[2] = { 1, 0 };
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, NULL);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_A, m, SIZE_MAX),
		 -EINVAL);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_A, m, SIZE_MAX - 62),
		 -EINVAL);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_A, m,
						 (size_t)UINT32_MAX + 1),
		 -EINVAL);
	CHECK_EQ(vcpureq_make_vcpus_request_mask(h.vm, REQ_A, m, 128), 0);
	h_vm_destroy(&h);
	return 0;
}

/* WAIT cycles across VMs: a vCPU thread in guest mode (the callback) or
 * in a lockless walk may not WAIT on a vCPU of another VM either. */
static struct vcpureq_vm *other_vm;
static _Atomic int cyc_ret = 1, cyc_done;

static int cycle_guest(struct vcpureq_vcpu *v, void *opaque)
{
	(void)opaque;
	if (!atomic_load(&cyc_done)) {
		atomic_store(&cyc_ret,
			     vcpureq_request(REQ_WAIT, vcpureq_vm_vcpu(other_vm, 0)));
		atomic_store(&cyc_done, 1);
	}
	while (!vcpureq_guest_kicked(v))
		;
	return VCPUREQ_GUEST_KICKED;
}

TEST(wait_cycle_across_vms_refused)
{
	struct vcpureq_vm_opts o = { .guest = cycle_guest };
	struct h_vm a, b;
	struct vcpureq_vcpu *v;

	(void)be; /* guest mode in a callback: the thread backend */
	H_VM(&a, VCPUREQ_BACKEND_THREAD, 1, H_SPIN, &o);
	H_VM(&b, VCPUREQ_BACKEND_THREAD, 1, H_SPIN, NULL);
	other_vm = b.vm;
	CHECK_EQ(h_start(&b), 0);
	CHECK_EQ(h_start(&a), 0);
	while (!atomic_load(&cyc_done))
		h_sleep_us(100);
	CHECK_EQ(atomic_load(&cyc_ret), -EDEADLK);
	CHECK_EQ(h_stop_all(&a), 0);
	/* From a lockless walk, on this thread bound to a vCPU of a. */
	v = vcpureq_vm_vcpu(a.vm, 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_walk_lockless_begin(v), 0);
	CHECK_EQ(vcpureq_make_all_cpus_request(b.vm, REQ_WAIT), -EDEADLK);
	CHECK_EQ(vcpureq_request(REQ_WAIT, vcpureq_vm_vcpu(b.vm, 0)), -EDEADLK);
	/* Without WAIT it is fine. */
	CHECK(vcpureq_request(REQ_A, vcpureq_vm_vcpu(b.vm, 0)) >= 0);
	CHECK_EQ(vcpureq_walk_lockless_end(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	CHECK_EQ(h_stop_all(&b), 0);
	h_vm_destroy(&a);
	h_vm_destroy(&b);
	return 0;
}

/* After destroy every call says -ESHUTDOWN (the fd accessors and the
 * counters too); NULL handles never crash. */
TEST_BOTH(after_destroy_and_null)
{
	struct vcpureq_stats st;
	struct vcpureq_vcpu *v;
	struct h_vm h;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	CHECK_EQ(vcpureq_vm_destroy(h.vm), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vm_kvm_fd(h.vm), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vcpu_kvm_fd(v), -ESHUTDOWN);
	CHECK(vcpureq_vcpu_kvm_run(v) == NULL);
	CHECK_EQ(vcpureq_vcpu_stats(v, &st, sizeof(st)), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vm_kick_signal(h.vm), -ESHUTDOWN);
	CHECK_EQ(vcpureq_request(REQ_A, v), -ESHUTDOWN);
	CHECK_EQ(vcpureq_make_request(REQ_A, v), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vcpu_kick(v), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vcpu_wake_up(v), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vcpu_bind(v), -ESHUTDOWN);
	CHECK_EQ(vcpureq_make_all_cpus_request(h.vm, REQ_A), -ESHUTDOWN);
	CHECK_EQ(vcpureq_vcpu_create(h.vm, 5, NULL), -ESHUTDOWN);
	CHECK(strstr(vcpureq_errmsg(), "destroyed") != NULL);
	/* NULL: -EINVAL, or 0 / NULL / false for value accessors. */
	CHECK_EQ(vcpureq_vm_kick_signal(NULL), -EINVAL);
	CHECK_EQ(vcpureq_vm_kvm_fd(NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_kvm_fd(NULL), -EINVAL);
	CHECK(vcpureq_vcpu_kvm_run(NULL) == NULL);
	CHECK_EQ(vcpureq_vcpu_id(NULL), 0);
	CHECK_EQ(vcpureq_vcpu_index(NULL), 0);
	CHECK(vcpureq_vcpu_vm(NULL) == NULL);
	CHECK_EQ(vcpureq_vm_max_vcpus(NULL), 0);
	CHECK(vcpureq_vm_vcpu_by_id(NULL, 0) == NULL);
	CHECK(vcpureq_vcpu_mode(NULL) == VCPUREQ_OUTSIDE_GUEST_MODE);
	CHECK_EQ(vcpureq_vcpu_exit_epoch(NULL), 0);
	CHECK(!vcpureq_vcpu_is_blocking(NULL));
	CHECK(!vcpureq_vm_is_dead(NULL));
	CHECK(!vcpureq_vcpu_lapic_in_kernel(NULL));
	CHECK(vcpureq_vm_kick_mechanism(NULL) == VCPUREQ_KICK_DEFAULT);
	CHECK_EQ(vcpureq_vcpu_stats(NULL, &st, sizeof(st)), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_enter(NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_exit(NULL, 0), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_create(NULL, 0, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_adopt(NULL, 0, 3, NULL, 0, NULL), -EINVAL);
	h_vm_destroy(&h);
	return 0;
}

/* A vCPU thread that exits while still bound: the VM can still be
 * destroyed and freed (the thread is found gone). */
static _Atomic int bae_bind_ret = 1;

static void *bind_and_exit(void *arg)
{
	atomic_store(&bae_bind_ret, vcpureq_vcpu_bind(arg));
	return NULL;
}

TEST_BOTH(thread_exits_bound)
{
	struct h_vm h;
	pthread_t t;

	H_VM(&h, be, 2, H_SPIN, NULL);
	CHECK_EQ(pthread_create(&t, NULL, bind_and_exit,
				vcpureq_vm_vcpu(h.vm, 1)), 0);
	CHECK_EQ(pthread_join(t, NULL), 0);
	/* It did exit bound (else the case tests nothing). */
	CHECK_EQ(atomic_load(&bae_bind_ret), 0);
	/* The kernel reaps the thread's id at exit; join waits for that. */
	CHECK_EQ(vcpureq_vm_destroy(h.vm), 0);
	h_vm_destroy(&h);
	return 0;
}

/* fork(): the child may not use the parent's VM (its vCPU threads and
 * its tgkill target are the parent's); the parent's VM is unaffected. */
TEST_BOTH(fork_child_refused)
{
	struct vcpureq_vm_opts o = { .handle_requests = count_handler };
	struct h_vm h;
	int status;
	pid_t pid;

	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK_EQ(h_start(&h), 0);
	CHECK(h_wait_until(h_in_guest, &h, 0, HANG_MS));
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h.vm, 0);
		int ok = vcpureq_request(REQ_A, v) == -ECHILD &&
			 vcpureq_make_all_cpus_request(h.vm, REQ_WAIT) == -ECHILD &&
			 vcpureq_vcpu_kick(v) == -ECHILD &&
			 vcpureq_vm_destroy(h.vm) == -ECHILD &&
			 strstr(vcpureq_errmsg(), "fork") != NULL;
		_exit(ok ? 0 : 1);
	}
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
	CHECK(vcpureq_request(REQ_WAIT, vcpureq_vm_vcpu(h.vm, 0)) >= 0);
	CHECK(wait_handled(1));
	CHECK_EQ(h_stop_all(&h), 0);
	h_vm_destroy(&h);
	return 0;
}

/* The application installs its own handler for the kick signal after the
 * VM was created: bind refuses (kicks would be lost), until it is ours
 * again. */
static void app_handler(int sig)
{
	(void)sig;
}

TEST_BOTH(kick_handler_replaced_refused)
{
	struct sigaction sa = { .sa_handler = app_handler }, ours;
	struct vcpureq_vcpu *v;
	struct h_vm h;
	int sig;

	H_VM(&h, be, 1, H_SPIN, NULL);
	v = vcpureq_vm_vcpu(h.vm, 0);
	sig = vcpureq_vm_kick_signal(h.vm);
	CHECK_EQ(sigaction(sig, &sa, &ours), 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), -EBUSY);
	CHECK(strstr(vcpureq_errmsg(), "replaced") != NULL);
	CHECK_EQ(sigaction(sig, &ours, NULL), 0);
	CHECK_EQ(vcpureq_vcpu_bind(v), 0);
	CHECK_EQ(vcpureq_vcpu_unbind(v), 0);
	h_vm_destroy(&h);
	return 0;
}

/* halt_poll_ns is bounded: a 100 ms poll would spin most of a CPU. */
TEST(halt_poll_ns_bounded)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm = NULL;

	(void)be;
	o.backend = VCPUREQ_BACKEND_THREAD;
	o.halt_poll_ns = 100000000;
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), -EINVAL);
	CHECK(strstr(vcpureq_errmsg(), "halt_poll_ns") != NULL);
	o.halt_poll_ns = VCPUREQ_HALT_POLL_NS_MAX;
	CHECK_EQ(vcpureq_vm_open(&o, -1, &vm), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	return 0;
}
