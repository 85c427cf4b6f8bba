/* SPDX-License-Identifier: MIT */
/* Small utilities of the benchmark: time, threads, futex, watchdog. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t b_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t b_count(size_t full, size_t quick)
{
	double n = (double)(g_opt.quick ? quick : full) * g_opt.scale;

	return n < 5 ? 5 : (size_t)n;
}

void b_spin_ns(uint64_t ns)
{
	uint64_t end = b_now() + ns;

	while (b_now() < end)
		__builtin_ia32_pause();
}

void b_sleep_us(unsigned int us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

pid_t b_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

void b_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (cpu < 0) {
		long i, n = sysconf(_SC_NPROCESSORS_CONF);

		for (i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &set);
	} else {
		CPU_SET(cpu, &set);
	}
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

char b_thread_state(pid_t tid)
{
	char path[64], buf[512];
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return '?';
	return p[2];
}

bool b_wait_sleeping(pid_t tid, uint64_t timeout_ns)
{
	uint64_t end = b_now() + timeout_ns;

	while (b_thread_state(tid) != 'S') {
		if (b_now() > end)
			return false;
		b_spin_ns(2000);
	}
	return true;
}

int b_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	pthread_attr_t a;
	int r;

	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 256 * 1024);
	r = pthread_create(t, &a, fn, arg);
	pthread_attr_destroy(&a);
	return -r;
}

/* User + system CPU time of getrusage(who), in ns. */
static uint64_t rusage_cpu_ns(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
		       1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
		       1000u;
}

uint64_t b_thread_cpu_ns(void)
{
	return rusage_cpu_ns(RUSAGE_THREAD);
}

void b_progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void b_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vcpureq-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (vcpureq: %s)\n", vcpureq_errmsg());
	exit(1);
}

static _Atomic(const char *) phase = "start";
static _Atomic uint64_t phase_t;

void b_phase(const char *what)
{
	static int debug = -1;
	uint64_t now = b_now();

	if (debug < 0)
		debug = getenv("VCPUREQ_BENCH_DEBUG") != NULL;
	if (debug)
		fprintf(stderr, "[%.3f s in previous phase] %s\n",
			(double)(now - atomic_load(&phase_t)) / 1e9, what);
	atomic_store(&phase, what);
	atomic_store(&phase_t, now);
}

static unsigned int watchdog_s;

static void *watchdog(void *arg)
{
	uint64_t end = b_now() + (uint64_t)watchdog_s * 1000000000u;

	(void)arg;
	while (b_now() < end)
		b_sleep_us(200000);
	fprintf(stderr,
		"vcpureq-bench: watchdog: no result after %u s, stuck in phase '%s' for %.1f s\n",
		watchdog_s, atomic_load(&phase),
		(double)(b_now() - atomic_load(&phase_t)) / 1e9);
	_exit(1);
}

void b_watchdog_start(unsigned int seconds)
{
	pthread_t t;

	watchdog_s = seconds;
	if (b_thread(&t, watchdog, NULL) == 0)
		pthread_detach(t);
}

static uint64_t load_busy0, load_self0, load_wall0;

static uint64_t busy_ticks(void)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
		   &v[8], &v[9]);
	fclose(f);
	if (n < 8)
		return 0;
	/* user nice system [idle iowait] irq softirq steal (guest is in user) */
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static uint64_t self_cpu_ns(void)
{
	return rusage_cpu_ns(RUSAGE_SELF);
}

void b_load_start(void)
{
	load_busy0 = busy_ticks();
	load_self0 = self_cpu_ns();
	load_wall0 = b_now();
}

void b_load_end(double *foreign_cpu_s, double *capacity_s)
{
	double hz = (double)sysconf(_SC_CLK_TCK);
	double busy = (double)(busy_ticks() - load_busy0) / hz;
	double self = (double)(self_cpu_ns() - load_self0) / 1e9;

	*foreign_cpu_s = busy > self ? busy - self : 0;
	*capacity_s = (double)(b_now() - load_wall0) / 1e9 *
		      (double)sysconf(_SC_NPROCESSORS_ONLN);
}

uint32_t b_rand(uint32_t *state)
{
	uint32_t x = *state ? *state : 2463534242u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

int b_futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	return (int)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val,
			    NULL, NULL, 0);
}

static _Atomic uint32_t gate_open, gate_arrived;

void b_gate_close(void)
{
	atomic_store(&gate_open, 0);
	atomic_store(&gate_arrived, 0);
}

void b_gate_arrive(void)
{
	atomic_fetch_add(&gate_arrived, 1);
	while (!atomic_load(&gate_open))
		b_futex_wait(&gate_open, 0);
}

void b_gate_open(unsigned int n)
{
	while (atomic_load(&gate_arrived) < n)
		b_sleep_us(100);
	atomic_store(&gate_open, 1);
	b_futex_wake(&gate_open, INT_MAX);
}

int b_futex_wake(_Atomic uint32_t *w, int n)
{
	return (int)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n,
			    NULL, NULL, 0);
}

int b_vm(struct h_vm *h, unsigned int nr, enum h_prog prog,
	 const struct vcpureq_vm_opts *opts)
{
	int r = h_vm_create(h, VCPUREQ_BACKEND_KVM, nr, prog, opts);

	if (r == H_SKIP)
		return H_SKIP;
	if (r)
		b_die("creating a VM of %u vCPUs: %d (%s)", nr, r, strerror(-r));
	return 0;
}

void b_snap_counters(struct h_vm *h, unsigned int first, unsigned int n,
		     uint32_t *snap)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		snap[i] = (uint32_t)h_guest_iters(h, first + i);
}

bool b_counters_still(struct h_vm *h, unsigned int n, uint32_t *snap,
		      uint32_t *tmp)
{
	unsigned int i;

	b_snap_counters(h, 0, n, snap);
	if (n <= 2)
		b_spin_ns(300000);
	else
		b_sleep_us(2000);
	b_snap_counters(h, 0, n, tmp);
	for (i = 0; i < n; i++)
		if (tmp[i] != snap[i])
			return false;
	return true;
}

bool b_wait_progress(struct h_vm *h, unsigned int first, unsigned int n,
		     uint32_t *snap, uint64_t timeout_ns)
{
	uint64_t end = b_now() + timeout_ns;
	unsigned int i = 0;

	/* Each vCPU's counter must move at least once: it has run guest
	 * code since the snapshot. */
	while (i < n) {
		uint32_t c = (uint32_t)h_guest_iters(h, first + i);

		if (c != snap[i]) {
			snap[i] = c;
			i++;
			continue;
		}
		if (b_now() > end)
			return false;
		if (n > 2)
			b_sleep_us(500);
		else
			__builtin_ia32_pause();
	}
	return true;
}

/* perf_event_open on the raw_syscalls:sys_enter tracepoint, this thread
 * only: exact, seccomp-free, needs tracefs mounted. -1 if unavailable. */
int b_syscall_counter_open(void)
{
	static const char *const ids[] = {
		"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
		"/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
	};
	struct perf_event_attr a;
	unsigned long long id = 0;
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]) && !id; i++) {
		FILE *f = fopen(ids[i], "r");

		if (!f)
			continue;
		if (fscanf(f, "%llu", &id) != 1)
			id = 0;
		fclose(f);
	}
	if (!id)
		return -1;
	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_TRACEPOINT;
	a.size = sizeof(a);
	a.config = id;
	a.disabled = 1;
	return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1,
			    PERF_FLAG_FD_CLOEXEC);
}
