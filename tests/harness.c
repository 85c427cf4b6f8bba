/* SPDX-License-Identifier: MIT */
#include "harness.h"
#include "harness_arch.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE H_MEM_SIZE
#define DATA_GPA(id) H_DATA_GPA(id)

struct timespec h_in_ms(long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000l;
	if (t.tv_nsec >= 1000000000l) {
		t.tv_nsec -= 1000000000l;
		t.tv_sec++;
	}
	return t;
}

int h_time_scale(void)
{
	const char *e = getenv("VCPUREQ_TEST_TIME_SCALE");
	int n = e ? atoi(e) : 1;

	return n >= 1 && n <= 100 ? n : 1;
}

uint64_t h_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void h_sleep_us(unsigned int us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int h_set_prog(struct h_vm *h, unsigned int id, enum h_prog prog)
{
	atomic_store(&h->vcpus[id].prog, prog);
	if (h->backend != VCPUREQ_BACKEND_KVM)
		return 0;
	return h_arch_set_regs(h, id, prog,
			       vcpureq_vcpu_kvm_fd(vcpureq_vm_vcpu(h->vm, id)));
}

uint64_t h_guest_iters(struct h_vm *h, unsigned int id)
{
	if (h->backend != VCPUREQ_BACKEND_KVM)
		return atomic_load(&h->vcpus[id].tb_iters);
	return __atomic_load_n((uint32_t *)(h->mem + DATA_GPA(id)),
			       __ATOMIC_RELAXED);
}

uint32_t *h_guest_counter(struct h_vm *h, unsigned int id)
{
	if (h->backend != VCPUREQ_BACKEND_KVM)
		return NULL;
	return (uint32_t *)(h->mem + DATA_GPA(id));
}

uint64_t h_guest_irqs(struct h_vm *h, unsigned int id)
{
	if (h->backend != VCPUREQ_BACKEND_KVM)
		return atomic_load(&h->vcpus[id].tb_irqs);
	return __atomic_load_n((uint32_t *)(h->mem + DATA_GPA(id) + 4),
			       __ATOMIC_RELAXED);
}

uint8_t h_guest_in_byte(struct h_vm *h, unsigned int id)
{
	if (h->backend != VCPUREQ_BACKEND_KVM)
		return (uint8_t)atomic_load(&h->vcpus[id].in_value);
	return __atomic_load_n(h->mem + DATA_GPA(id) + 8, __ATOMIC_RELAXED);
}

/* Thread backend: the same programs as callbacks.  Exit "reasons" reuse
 * the KVM numbers so that hooks are backend-agnostic. */
static int tb_guest(struct vcpureq_vcpu *vcpu, void *opaque)
{
	struct h_vm *h = opaque;
	struct h_vcpu *hv = &h->vcpus[vcpureq_vcpu_index(vcpu)];
	int v;

	switch (atomic_load(&hv->prog)) {
	case H_SPIN:
		for (;;) {
			atomic_fetch_add_explicit(&hv->tb_iters, 1,
						  memory_order_relaxed);
			if (vcpureq_guest_kicked(vcpu))
				return VCPUREQ_GUEST_KICKED;
		}
	case H_OUT:
		atomic_fetch_add(&hv->tb_iters, 1);
		return KVM_EXIT_IO;
	case H_IRQ:
		while ((v = vcpureq_vcpu_take_interrupt(vcpu)) >= 0)
			atomic_fetch_add(&hv->tb_irqs, 1);
		atomic_fetch_add(&hv->tb_iters, 1);
		return KVM_EXIT_HLT;
	case H_IN:
		return KVM_EXIT_HLT;
	case H_HALT:
	default:
		atomic_fetch_add(&hv->tb_iters, 1);
		return KVM_EXIT_HLT;
	}
}

enum vcpureq_kick_mechanism h_kick_mechanism(void)
{
	const char *k = getenv("VCPUREQ_TEST_KICK");

	if (k && !strcmp(k, "sigmask"))
		return VCPUREQ_KICK_SIGMASK;
	if (k && !strcmp(k, "immediate_exit"))
		return VCPUREQ_KICK_IMMEDIATE_EXIT;
	return VCPUREQ_KICK_DEFAULT;
}

static bool kvm_really_absent(void)
{
	struct stat st;

	if (stat("/dev/kvm", &st) < 0)
		return true;
	return access("/dev/kvm", R_OK | W_OK) < 0;
}

static int setup_memory(struct h_vm *h, int vm_fd)
{
	struct kvm_userspace_memory_region reg;

	h->mem_size = MEM_SIZE;
	h->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (h->mem == MAP_FAILED)
		return -errno;
	h_arch_load(h->mem);
	memset(&reg, 0, sizeof(reg));
	reg.slot = 0;
	reg.guest_phys_addr = 0;
	reg.memory_size = MEM_SIZE;
	reg.userspace_addr = (uintptr_t)h->mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return -errno;
	return 0;
}

int h_vcpu_init(struct h_vm *h, int vcpu_fd)
{
	return h_arch_vcpu_init(vcpureq_vm_kvm_fd(h->vm), vcpu_fd);
}

/* The harness as a VMM that made the fds itself: KVM_CREATE_VCPU, mmap of
 * kvm_run, then vcpureq adopts both. */
static int adopt_vcpu(struct h_vm *h, unsigned long id)
{
	long size = ioctl(h->own_kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	int fd = ioctl(vcpureq_vm_kvm_fd(h->vm), KVM_CREATE_VCPU, id);
	void *run;
	int r;

	if (fd < 0 || size <= 0)
		return -errno;
	if ((r = h_arch_vcpu_init(vcpureq_vm_kvm_fd(h->vm), fd))) {
		close(fd);
		return r;
	}
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	if (run == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	h->own_vcpu_fd[h->nr] = fd;
	h->own_run[h->nr] = run;
	h->own_run_size = (size_t)size;
	return vcpureq_vcpu_adopt(h->vm, id, fd, run, (size_t)size, NULL);
}

int h_add_vcpu(struct h_vm *h, unsigned long id, enum h_prog prog)
{
	unsigned int i = h->nr;
	int r;

	if (i >= H_CAP)
		return -ENOSPC;
	h->vcpus[i].h = h;
	h->vcpus[i].id = i;
	if (h->flags & H_F_ADOPT)
		r = adopt_vcpu(h, id);
	else
		r = vcpureq_vcpu_create(h->vm, id, NULL);
	if (r)
		return r;
	h->nr = i + 1;
	return h_set_prog(h, i, prog);
}

int h_vm_create_cfg(struct h_vm *h, enum vcpureq_backend be, unsigned int nr,
		    enum h_prog prog, const struct vcpureq_vm_opts *opts,
		    unsigned int flags, const unsigned long *ids)
{
	struct vcpureq_vm_opts o;
	unsigned int i;
	int r, vm_fd = -1;

	memset(h, 0, sizeof(*h));
	if (opts)
		o = *opts;
	else
		memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.backend = be;
	if (be == VCPUREQ_BACKEND_KVM && o.kick == VCPUREQ_KICK_DEFAULT)
		o.kick = h_kick_mechanism();
	if (be == VCPUREQ_BACKEND_THREAD) {
		if (!o.guest)
			o.guest = tb_guest;
		if (!o.opaque)
			o.opaque = h;
	}
	if (be == VCPUREQ_BACKEND_KVM && kvm_really_absent()) {
		printf("SKIP: /dev/kvm is absent or not accessible (%s); KVM tests need it\n",
		       strerror(errno));
		return H_SKIP;
	}
	h->guest = o.guest;
	h->guest_opaque = o.opaque;
	h->backend = be;
	h->flags = flags;
	h->own_kvm_fd = -1;
	h->vcpus = calloc(nr > H_CAP ? nr : H_CAP, sizeof(*h->vcpus));
	if (!h->vcpus)
		return -ENOMEM;
	if (!flags && !ids) {
		/* The one-call convenience. */
		o.nr_vcpus = nr;
		r = vcpureq_vm_create(&o, &h->vm);
		if (r)
			return r;
		h->nr = nr;
		for (i = 0; i < nr; i++) {
			h->vcpus[i].h = h;
			h->vcpus[i].id = i;
		}
		if (be == VCPUREQ_BACKEND_KVM &&
		    (r = setup_memory(h, vcpureq_vm_kvm_fd(h->vm))))
			return r;
		for (i = 0; i < nr; i++)
			if ((r = h_set_prog(h, i, prog)))
				return r;
		return 0;
	}
	if (nr > H_CAP)
		return -EINVAL;
	/* The split lifecycle: the VM, VM-wide setup, then vCPUs one by
	 * one. */
	if (be == VCPUREQ_BACKEND_KVM && (flags & H_F_ADOPT)) {
		h->own_kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (h->own_kvm_fd < 0)
			return -errno;
		vm_fd = ioctl(h->own_kvm_fd, KVM_CREATE_VM, 0);
		if (vm_fd < 0)
			return -errno;
		h->own_vm_fd = vm_fd;
	}
	r = vcpureq_vm_open(&o, vm_fd, &h->vm);
	if (r)
		return r;
	if (be == VCPUREQ_BACKEND_KVM) {
		vm_fd = vcpureq_vm_kvm_fd(h->vm);
		if ((r = h_arch_vm_setup(h, vm_fd)))
			return r;
		if ((r = setup_memory(h, vm_fd)))
			return r;
	}
	for (i = 0; i < nr; i++)
		if ((r = h_add_vcpu(h, ids ? ids[i] : i, prog)))
			return r;
	if (be == VCPUREQ_BACKEND_KVM)
		return h_arch_vm_finish(h, vm_fd);
	return 0;
}

int h_vm_create(struct h_vm *h, enum vcpureq_backend be, unsigned int nr,
		enum h_prog prog, const struct vcpureq_vm_opts *opts)
{
	return h_vm_create_cfg(h, be, nr, prog, opts, 0, NULL);
}

void h_vm_destroy(struct h_vm *h)
{
	unsigned int i;

	if (h->vm)
		vcpureq_vm_free(h->vm);
	/* Adopted fds and mappings are the VMM's (ours) to release, after
	 * vcpureq is done with them. */
	for (i = 0; i < H_CAP; i++) {
		if (h->own_run[i])
			munmap(h->own_run[i], h->own_run_size);
		if (h->own_vcpu_fd[i] > 0)
			close(h->own_vcpu_fd[i]);
	}
	if (h->irqchip_fd > 0)
		close(h->irqchip_fd);
	if (h->own_vm_fd > 0)
		close(h->own_vm_fd);
	if (h->own_kvm_fd > 0)
		close(h->own_kvm_fd);
	if (h->mem && h->mem != MAP_FAILED)
		munmap(h->mem, h->mem_size);
	free(h->vcpus);
	memset(h, 0, sizeof(*h));
}

static int exit_reason(struct h_vm *h, struct vcpureq_vcpu *v)
{
	int port;

	if (h->backend == VCPUREQ_BACKEND_KVM)
		return h_arch_exit(vcpureq_vcpu_kvm_run(v), &port);
	return vcpureq_vcpu_guest_ret(v);
}

int h_exit_port(struct h_vm *h, unsigned int id, int reason)
{
	int port = -1;

	if (h->backend == VCPUREQ_BACKEND_KVM && reason == KVM_EXIT_IO)
		h_arch_exit(vcpureq_vcpu_kvm_run(vcpureq_vm_vcpu(h->vm, id)),
			    &port);
	return port;
}

/* $VCPUREQ_TEST_LOOP=own: the VMM-owned loop over the enter/exit pair,
 * with the harness's own ioctl(KVM_RUN) (or guest code), in place of
 * vcpureq_vcpu_run(); it must return the same results. */
static bool own_loop(void)
{
	const char *l = getenv("VCPUREQ_TEST_LOOP");

	return l && !strcmp(l, "own");
}

static int own_run(struct h_vm *h, struct vcpureq_vcpu *v)
{
	for (;;) {
		int r = vcpureq_vcpu_enter(v);

		if (r != VCPUREQ_RUN_ENTER)
			return r;
		if (h->backend == VCPUREQ_BACKEND_KVM)
			r = ioctl(vcpureq_vcpu_kvm_fd(v), KVM_RUN, 0) < 0 ?
				    -errno : 0;
		else
			r = h->guest(v, h->guest_opaque);
		r = vcpureq_vcpu_exit(v, r);
		if (r != VCPUREQ_RUN_AGAIN)
			return r;
	}
}

int h_run(struct h_vm *h, struct vcpureq_vcpu *v)
{
	return own_loop() ? own_run(h, v) : vcpureq_vcpu_run(v);
}

static void *vcpu_main(void *arg)
{
	struct h_vcpu *hv = arg;
	struct h_vm *h = hv->h;
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, hv->id);
	int r;

	r = vcpureq_vcpu_bind(v);
	if (r) {
		atomic_store(&hv->run_ret, r);
		atomic_store(&hv->finished, 1);
		return NULL;
	}
	atomic_store(&hv->tid, (pid_t)syscall(SYS_gettid));
	atomic_store(&hv->started, 1);
	for (;;) {
		r = h_run(h, v);
		if (r == -EIO)
			break; /* VM dead */
		if (r < 0) {
			atomic_store(&hv->run_ret, r);
			fprintf(stderr, "vcpu %u: run: %d (%s)\n", hv->id, r,
				vcpureq_errmsg());
			break;
		}
		if (r == VCPUREQ_RUN_REQUEST) {
			if (vcpureq_check_request(H_REQ_STOP, v) > 0)
				break;
			if (h->hooks.on_request && !h->hooks.on_request(h, hv->id))
				break;
			continue;
		}
		r = exit_reason(h, v);
		atomic_fetch_add(&hv->vmm_exits, 1);
		if (h->hooks.on_exit && !h->hooks.on_exit(h, hv->id, r))
			break;
		if (h->backend == VCPUREQ_BACKEND_KVM)
			h_arch_answer(v, vcpureq_vcpu_kvm_run(v),
				      (uint8_t)atomic_load(&hv->in_value));
		if (r == KVM_EXIT_HLT) {
			int why = vcpureq_vcpu_block(v);

			if (why < 0) {
				atomic_store(&hv->run_ret, why);
				break;
			}
			if (h->hooks.on_wake && !h->hooks.on_wake(h, hv->id, why))
				break;
		}
	}
	vcpureq_vcpu_unbind(v);
	atomic_store(&hv->finished, 1);
	return NULL;
}

int h_start_one(struct h_vm *h, unsigned int id)
{
	int r = pthread_create(&h->vcpus[id].thread, NULL, vcpu_main,
			       &h->vcpus[id]);

	if (r)
		return -r;
	while (!atomic_load(&h->vcpus[id].started) &&
	       !atomic_load(&h->vcpus[id].finished))
		h_sleep_us(100);
	return atomic_load(&h->vcpus[id].run_ret);
}

int h_start(struct h_vm *h)
{
	unsigned int i;
	int r;

	for (i = 0; i < h->nr; i++) {
		r = h_start_one(h, i);
		if (r)
			return r;
	}
	return 0;
}

void h_join_all(struct h_vm *h)
{
	unsigned int i;

	for (i = 0; i < h->nr; i++)
		if (h->vcpus[i].thread) {
			pthread_join(h->vcpus[i].thread, NULL);
			h->vcpus[i].thread = 0;
		}
}

int h_stop_all(struct h_vm *h)
{
	int r = vcpureq_make_all_cpus_request(h->vm, H_REQ_STOP);

	h_join_all(h);
	return r < 0 ? r : 0;
}

bool h_wait_until(bool (*pred)(struct h_vm *, unsigned int), struct h_vm *h,
		  unsigned int id, unsigned int timeout_ms)
{
	uint64_t end = h_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (!pred(h, id)) {
		if (h_now_ns() > end)
			return false;
		h_sleep_us(200);
	}
	return true;
}

/*
 * IN_GUEST_MODE alone is not "in the guest": the mode is published before
 * the entry's final request check (the kernel's order), so a request made
 * in that window is seen by the check and the vCPU leaves without a kick
 * (no signal, nothing for the kick to report).  A test that waited for the
 * mode alone and then asserts "this request needs a signal" fails when the
 * vCPU thread is preempted in that window (seen under ASan on a loaded
 * machine).  The entry is counted (stats.entries) only after the check
 * passed, and the exit before the next publish; so read the mode first,
 * then the counters (vcpureq_vcpu_stats() reads entries before exits):
 * while instance k is in its window, entries <= k-1 and, the mode being
 * read first, exits >= k-1, so entries > exits holds only once instance
 * k has passed its check.  The fence keeps the reader's mode load before
 * its counter loads.  The vCPU's side is in store order on x86-64 (and on
 * the arm64 runs here, emulated on x86-64); on weakly ordered hardware the
 * relaxed publish may be seen before the previous exit's count, so the
 * predicate could hold a few instructions early there.
 */
bool h_in_guest(struct h_vm *h, unsigned int id)
{
	struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, id);
	struct vcpureq_stats s;

	if (vcpureq_vcpu_mode(v) != VCPUREQ_IN_GUEST_MODE)
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	if (vcpureq_vcpu_stats(v, &s, sizeof(s)) < 0)
		return false;
	return s.entries > s.exits;
}

long h_thread_syscall(pid_t tid)
{
	char path[64], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || buf[0] < '0' || buf[0] > '9')
		return -1;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/*
 * vcpureq_vcpu_is_blocking() turns true when the sleeper publishes
 * SLEEPING, before its fence [S] and its check of the wake conditions: a
 * request (or VM_DEAD) made in that window is seen by the check, and
 * block returns without a wake-up.  A test that waited for the flag alone
 * and then asserts "this needs a wake-up" or "NO_WAKEUP leaves it asleep"
 * fails when the vCPU thread is preempted there.  In the futex wait it is
 * past the check.  (Where /proc has no syscall file, the flag alone.)
 */
bool h_in_futex_wait(pid_t tid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	if (tid <= 0 || access(path, R_OK) != 0)
		return true; /* cannot tell */
	return h_thread_syscall(tid) == SYS_futex;
}

bool h_sleeping(struct h_vm *h, unsigned int id)
{
	return vcpureq_vcpu_is_blocking(vcpureq_vm_vcpu(h->vm, id)) &&
	       h_in_futex_wait(atomic_load(&h->vcpus[id].tid));
}

bool h_spinning(struct h_vm *h, unsigned int id)
{
	return h_in_guest(h, id) && h_guest_iters(h, id) > 100;
}

struct vcpureq_stats h_stats(struct h_vm *h, unsigned int id)
{
	struct vcpureq_stats st;

	vcpureq_vcpu_stats(vcpureq_vm_vcpu(h->vm, id), &st, sizeof(st));
	return st;
}

bool h_wait_ge(_Atomic uint64_t *p, uint64_t want, unsigned int timeout_ms)
{
	uint64_t end = h_now_ns() + (uint64_t)timeout_ms * 1000000u;
	unsigned int n = 0;

	while (atomic_load(p) < want) {
		if ((++n & 1023) == 0) {
			if (h_now_ns() > end)
				return atomic_load(p) >= want;
			sched_yield(); /* 2 cores: let the vCPU thread run */
		}
	}
	return true;
}

