/* SPDX-License-Identifier: MIT */
/*
 * Hostile or unlucky setup: fds that are not what vcpureq_vm_open() and
 * vcpureq_vcpu_adopt() are told they are, a kvm_run mapping that fails
 * after KVM_CREATE_VCPU, an application that takes the kick signal over,
 * the index accessors at a full VM and while vCPUs are added, and the
 * per-vCPU user pointer.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"

#define REQ_A VCPUREQ_ARCH_REQ(1)
#define HANG_MS (20000 * h_time_scale()) /* a hang, not a deadline: the CTest timeout is 60 s */

/* What the per-vCPU user pointer points to (user_data cases). */
struct my_vcpu {
	unsigned int magic; /* written before the pointer is set */
	_Atomic uint64_t handled;
};

static _Atomic uint64_t bad_user_data;

/* Counts REQ_A in the VMM's own per-vCPU struct, found through the
 * vCPU's user pointer (not the VM's opaque). */
static int user_handler(struct vcpureq_vcpu *v, void *opaque)
{
	struct my_vcpu *m = vcpureq_vcpu_user_data(v);

	(void)opaque;
	if (vcpureq_check_request(REQ_A, v) > 0) {
		if (!m || m->magic != 0xc0de0000u + vcpureq_vcpu_index(v))
			atomic_fetch_add(&bad_user_data, 1);
		else
			atomic_fetch_add(&m->handled, 1);
	}
	return 0;
}

static bool wait_ge(_Atomic uint64_t *p, uint64_t n)
{
	return h_wait_ge(p, n, HANG_MS);
}

/* Request REQ_A of every vCPU of @h and see each handler take it. */
static int round_trip(struct h_vm *h, struct my_vcpu *m)
{
	unsigned int i;

	for (i = 0; i < h->nr; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, i);
		uint64_t before;

		CHECK(v);
		CHECK(h_wait_until(h_in_guest, h, i, HANG_MS));
		before = atomic_load(&m[i].handled);
		CHECK(vcpureq_request(REQ_A, v) >= 0);
		CHECK(wait_ge(&m[i].handled, before + 1));
	}
	CHECK_EQ(atomic_load(&bad_user_data), 0);
	return 0;
}

static int set_user_data_all(struct h_vm *h, struct my_vcpu *m)
{
	unsigned int i;

	for (i = 0; i < h->nr; i++) {
		m[i].magic = 0xc0de0000u + i;
		CHECK_EQ(vcpureq_vcpu_set_user_data(vcpureq_vm_vcpu(h->vm, i),
						    &m[i]), 0);
	}
	return 0;
}

/* The VM works after what was refused: every vCPU gets its user data,
 * runs and takes a request; then the VM is destroyed. */
static int all_run_then_destroy(struct h_vm *h, struct my_vcpu *m)
{
	CHECK(set_user_data_all(h, m) == 0);
	CHECK_EQ(h_start(h), 0);
	CHECK(round_trip(h, m) == 0);
	CHECK_EQ(h_stop_all(h), 0);
	h_vm_destroy(h);
	return 0;
}

static bool msg_has(const char *a, const char *b)
{
	const char *m = vcpureq_errmsg();

	if (strstr(m, a) && (!b || strstr(m, b)))
		return true;
	fprintf(stderr, "message \"%s\" lacks \"%s\"%s%s\n", m, a,
		b ? " or " : "", b ? b : "");
	return false;
}

/* A closed fd number: the read end of a pipe, closed. */
static int closed_fd(void)
{
	int p[2];

	if (pipe(p) < 0)
		return -1;
	close(p[0]);
	close(p[1]);
	return p[0];
}

/*
 * vcpureq_vcpu_adopt() with fds that are not a vCPU fd of this VM of that
 * id, each with a valid kvm_run mapping (as a VMM always passes one): each
 * refused with its errno and a message naming the problem, nothing added;
 * then a correct adopt succeeds and every vCPU takes a request.
 */
TEST(adopt_hostile_fds)
{
	struct vcpureq_vm_opts o = { .handle_requests = user_handler };
	struct my_vcpu m[2];
	struct h_vm h;
	int p[2], efd, null_fd, kvm_fd, other_vm, other_vcpu, id5, dup0;
	void *run;
	size_t rs;

	memset(m, 0, sizeof(m));
	H_VM_CFG(&h, be, 1, H_SPIN, &o, H_F_ADOPT, NULL);
	run = h.own_run[0];
	rs = h.own_run_size;
	CHECK(pipe(p) == 0);
	efd = eventfd(0, EFD_CLOEXEC);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(efd >= 0 && null_fd >= 0 && kvm_fd >= 0);
	other_vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	CHECK(other_vm >= 0);
	other_vcpu = ioctl(other_vm, KVM_CREATE_VCPU, 1);
	id5 = ioctl(h.own_vm_fd, KVM_CREATE_VCPU, 5);
	CHECK(id5 < 0 || h_vcpu_init(&h, id5) == 0); /* arm64: VCPU_INIT */
	dup0 = dup(h.own_vcpu_fd[0]);
	CHECK(other_vcpu >= 0 && id5 >= 0 && dup0 >= 0);

	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, closed_fd(), run, rs, NULL), -EBADF);
	CHECK(msg_has("not an open file descriptor", NULL));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, null_fd, run, rs, NULL), -EINVAL);
	CHECK(msg_has("/dev/null", "not a KVM vCPU fd"));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, p[0], run, rs, NULL), -EINVAL);
	CHECK(msg_has("pipe:", "not a KVM vCPU fd"));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, efd, run, rs, NULL), -EINVAL);
	CHECK(msg_has("eventfd", "not a KVM vCPU fd"));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, h.own_vm_fd, run, rs, NULL), -EINVAL);
	CHECK(msg_has("a VM fd", "not a vCPU fd"));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, kvm_fd, run, rs, NULL), -EINVAL);
	CHECK(msg_has("/dev/kvm system fd", NULL));
	/* Another VM's vCPU, of the right id: the coalesced-MMIO probe. */
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, other_vcpu, run, rs, NULL), -EINVAL);
	CHECK(msg_has("another VM", NULL));
	/* This VM's vCPU 5 named as 6; vCPU 0's fd named as 3. */
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 6, id5, run, rs, NULL), -EINVAL);
	CHECK(msg_has("vCPU id 5", "vCPU id 6"));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 3, dup0, run, rs, NULL), -EINVAL);
	CHECK(msg_has("vCPU id 0", "vCPU id 3"));
	/* The same vCPU fd, or a dup of it, adopted again. */
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 0, h.own_vcpu_fd[0], run, rs, NULL),
		 -EEXIST);
	CHECK(msg_has("already in the VM", NULL));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 0, dup0, run, rs, NULL), -EEXIST);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 1);
	CHECK(vcpureq_vm_vcpu(h.vm, 1) == NULL);

	/* The probe left both VMs' pages as they were: the good adopt of
	 * this VM's vCPU 5 passes it, and so the VM goes on. */
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 5, id5, NULL, 0, NULL), 0);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 2);
	CHECK_EQ(vcpureq_vcpu_id(vcpureq_vm_vcpu(h.vm, 1)), 5);
	h.nr = 2;
	h.vcpus[1].h = &h;
	h.vcpus[1].id = 1;
	CHECK_EQ(h_set_prog(&h, 1, H_SPIN), 0);
	CHECK(all_run_then_destroy(&h, m) == 0);
	close(id5);
	close(dup0);
	close(other_vcpu);
	close(other_vm);
	close(kvm_fd);
	close(null_fd);
	close(efd);
	close(p[0]);
	close(p[1]);
	return 0;
}

/* vcpureq_vm_open() with fds that are not a KVM VM fd: each refused with
 * its errno and a message naming it (not "lacks capability"); then a real
 * VM fd opens and runs. */
TEST(vm_open_hostile_fds)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm_opts uo = { .handle_requests = user_handler };
	struct vcpureq_vm *vm = (struct vcpureq_vm *)&o;
	struct my_vcpu m[1];
	int p[2], efd, null_fd, kvm_fd, vm_fd, vcpu_fd;
	struct h_vm h;

	(void)be;
	memset(m, 0, sizeof(m));
	o.backend = VCPUREQ_BACKEND_KVM;
	o.kick = h_kick_mechanism();
	CHECK(pipe(p) == 0);
	efd = eventfd(0, EFD_CLOEXEC);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return H_SKIP;
	}
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	CHECK(efd >= 0 && null_fd >= 0 && vm_fd >= 0);
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	CHECK(vcpu_fd >= 0);

	CHECK_EQ(vcpureq_vm_open(&o, closed_fd(), &vm), -EBADF);
	CHECK(vm == NULL);
	CHECK(msg_has("not an open file descriptor", NULL));
	CHECK_EQ(vcpureq_vm_open(&o, kvm_fd, &vm), -EINVAL);
	CHECK(msg_has("/dev/kvm system fd, not a VM fd", "KVM_CREATE_VM"));
	CHECK_EQ(vcpureq_vm_open(&o, p[0], &vm), -EINVAL);
	CHECK(msg_has("pipe:", "not a KVM VM fd"));
	CHECK_EQ(vcpureq_vm_open(&o, efd, &vm), -EINVAL);
	CHECK(msg_has("eventfd", "not a KVM VM fd"));
	CHECK_EQ(vcpureq_vm_open(&o, null_fd, &vm), -EINVAL);
	CHECK(msg_has("/dev/null", "not a KVM VM fd"));
	CHECK_EQ(vcpureq_vm_open(&o, vcpu_fd, &vm), -EINVAL);
	CHECK(msg_has("kvm-vcpu", "not a KVM VM fd"));
	CHECK(vm == NULL);
	/* A real VM fd opens (and the failures left no kick-signal user
	 * behind: the harness's VM takes the same signal). */
	CHECK_EQ(vcpureq_vm_open(&o, vm_fd, &vm), 0);
	CHECK_EQ(vcpureq_vm_nr_vcpus(vm), 0);
	CHECK_EQ(vcpureq_vm_free(vm), 0);
	H_VM_CFG(&h, VCPUREQ_BACKEND_KVM, 1, H_SPIN, &uo, H_F_ADOPT, NULL);
	CHECK(all_run_then_destroy(&h, m) == 0);
	close(vcpu_fd);
	close(vm_fd);
	close(kvm_fd);
	close(null_fd);
	close(efd);
	close(p[0]);
	close(p[1]);
	return 0;
}

/* Make /proc unreachable for this process (the case's own): a private
 * mount namespace without it.  0, or H_SKIP when not permitted. */
static int hide_proc(void)
{
	char l[64];

	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    umount2("/proc", MNT_DETACH) < 0) {
		printf("SKIP: cannot unmount /proc in a private mount namespace: %s\n",
		       strerror(errno));
		return H_SKIP;
	}
	if (readlink("/proc/self/exe", l, sizeof(l)) >= 0) {
		printf("SKIP: /proc still reachable\n");
		return H_SKIP;
	}
	return 0;
}

/* Without /proc: the ioctl and mapping fallbacks refuse the same fds
 * (the kind named less precisely; a vCPU fd's id is not checked), and a
 * correct adopt still works. */
TEST(hostile_fds_without_proc)
{
	struct vcpureq_vm_opts o = { .handle_requests = user_handler };
	struct vcpureq_vm_opts vo = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm = NULL;
	struct my_vcpu m[2];
	struct h_vm h;
	int p[2], efd, null_fd, kvm_fd, other_vm, other_vcpu, id5, dup0, r;
	void *run;
	size_t rs;

	memset(m, 0, sizeof(m));
	H_VM_CFG(&h, be, 1, H_SPIN, &o, H_F_ADOPT, NULL);
	run = h.own_run[0];
	rs = h.own_run_size;
	CHECK(pipe(p) == 0);
	efd = eventfd(0, EFD_CLOEXEC);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(efd >= 0 && null_fd >= 0 && kvm_fd >= 0);
	other_vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	CHECK(other_vm >= 0);
	other_vcpu = ioctl(other_vm, KVM_CREATE_VCPU, 1);
	id5 = ioctl(h.own_vm_fd, KVM_CREATE_VCPU, 5);
	CHECK(id5 < 0 || h_vcpu_init(&h, id5) == 0); /* arm64: VCPU_INIT */
	dup0 = dup(h.own_vcpu_fd[0]);
	CHECK(other_vcpu >= 0 && id5 >= 0 && dup0 >= 0);
	r = hide_proc();
	if (r) {
		h_vm_destroy(&h);
		return r;
	}

	vo.backend = VCPUREQ_BACKEND_KVM;
	vo.kick = h_kick_mechanism();
	CHECK_EQ(vcpureq_vm_open(&vo, closed_fd(), &vm), -EBADF);
	CHECK_EQ(vcpureq_vm_open(&vo, kvm_fd, &vm), -EINVAL);
	CHECK(msg_has("/dev/kvm system fd, not a VM fd", NULL));
	CHECK_EQ(vcpureq_vm_open(&vo, p[0], &vm), -EINVAL);
	CHECK(msg_has("not a KVM VM fd", NULL));
	CHECK_EQ(vcpureq_vm_open(&vo, efd, &vm), -EINVAL);
	CHECK_EQ(vcpureq_vm_open(&vo, null_fd, &vm), -EINVAL);
	CHECK_EQ(vcpureq_vm_open(&vo, id5, &vm), -EINVAL);
	CHECK(vm == NULL);

	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, closed_fd(), run, rs, NULL), -EBADF);
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, null_fd, run, rs, NULL), -EINVAL);
	CHECK(msg_has("not a KVM vCPU fd", NULL));
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, p[0], run, rs, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, efd, run, rs, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, h.own_vm_fd, run, rs, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, kvm_fd, run, rs, NULL), -EINVAL);
	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 1, other_vcpu, run, rs, NULL), -EINVAL);
	CHECK(msg_has("another VM", NULL));
	/* A dup of vCPU 0's fd under another id: kcmp, where the kernel
	 * has it. */
	if (syscall(SYS_kcmp, getpid(), getpid(), 0, dup0, h.own_vcpu_fd[0]) == 0) {
		CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 3, dup0, run, rs, NULL), -EEXIST);
		CHECK(msg_has("already in the VM", NULL));
	}
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 1);

	CHECK_EQ(vcpureq_vcpu_adopt(h.vm, 5, id5, NULL, 0, NULL), 0);
	/* /proc back (in this namespace only), for LeakSanitizer at exit. */
	CHECK(mount("proc", "/proc", "proc", 0, NULL) == 0);
	h.nr = 2;
	h.vcpus[1].h = &h;
	h.vcpus[1].id = 1;
	CHECK_EQ(h_set_prog(&h, 1, H_SPIN), 0);
	CHECK(all_run_then_destroy(&h, m) == 0);
	close(id5);
	close(dup0);
	close(other_vcpu);
	close(other_vm);
	close(kvm_fd);
	close(null_fd);
	close(efd);
	close(p[0]);
	close(p[1]);
	return 0;
}

/* Bytes of address space in use (VmSize). */
static unsigned long vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[128];
	unsigned long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

/*
 * The kvm_run mmap fails for real after KVM_CREATE_VCPU (RLIMIT_AS just
 * above the address space in use; this process is the case's own): the
 * add fails with -ENOMEM and adds nothing, and a retry with the same id
 * (limit restored) succeeds with the fd vcpureq kept, instead of KVM's
 * -EEXIST; the vCPU is found by id and takes a request.
 */
TEST(create_retry_after_mmap_failure)
{
	struct vcpureq_vm_opts o = { .handle_requests = user_handler };
	struct rlimit old, lim;
	struct my_vcpu m[2];
	struct vcpureq_vcpu *v = (struct vcpureq_vcpu *)&o;
	struct h_vm h;
	unsigned long used;
	char msg[256];
	void *warm;
	int r;

	memset(m, 0, sizeof(m));
	H_VM(&h, be, 1, H_SPIN, &o);
	CHECK(getrlimit(RLIMIT_AS, &old) == 0);
	/* The vCPU struct's allocation must come from the heap as it is. */
	warm = aligned_alloc(64, 65536);
	CHECK(warm);
	memset(warm, 0, 65536);
	free(warm);
	used = vm_size();
	CHECK(used > 0);
	lim = old;
	lim.rlim_cur = used + 4096; /* room for no kvm_run (>= 2 pages) */
	CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
	r = vcpureq_vcpu_create(h.vm, 1, &v);
	CHECK(setrlimit(RLIMIT_AS, &old) == 0);
	CHECK_EQ(r, -ENOMEM);
	snprintf(msg, sizeof(msg), "%s", vcpureq_errmsg());
	CHECK(v == NULL);
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 1);
	CHECK(vcpureq_vm_vcpu_by_id(h.vm, 1) == NULL);
	/* The retry: the kept fd, mapped now (not KVM's -EEXIST). */
	CHECK_EQ(h_add_vcpu(&h, 1, H_SPIN), 0);
	if (!strstr(msg, "mmap of kvm_run") ||
	    !strstr(msg, "retry vcpureq_vcpu_create()"))
		fprintf(stderr, "message: %s\n", msg);
	CHECK(strstr(msg, "mmap of kvm_run") &&
	      strstr(msg, "retry vcpureq_vcpu_create()"));
	CHECK_EQ(vcpureq_vm_nr_vcpus(h.vm), 2);
	v = vcpureq_vm_vcpu_by_id(h.vm, 1);
	CHECK(v && v == vcpureq_vm_vcpu(h.vm, 1));
	CHECK(vcpureq_vcpu_kvm_fd(v) >= 0);
	CHECK(all_run_then_destroy(&h, m) == 0);
	return 0;
}

static _Atomic int app_hits;
static void app_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&app_hits, 1);
}

static struct vcpureq_vm *open_vm(enum vcpureq_backend be, int sig, int *err)
{
	struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
	struct vcpureq_vm *vm = NULL;

	o.backend = be;
	o.kick_signal = sig;
	if (be == VCPUREQ_BACKEND_KVM)
		o.kick = h_kick_mechanism();
	*err = vcpureq_vm_open(&o, -1, &vm);
	return vm;
}

/*
 * The kick signal and the application: the last destroy puts back the
 * disposition found before (its sa_mask too) over vcpureq's handler, and
 * leaves a handler the application installed after create in place (its
 * raise() of the signal runs it, not the default action); a VM opened
 * while the application has replaced the shared handler is refused.
 */
TEST_BOTH(destroy_keeps_app_handler)
{
	struct sigaction pre, sa, cur;
	struct vcpureq_vm *a, *b;
	int sig = SIGRTMIN + 7, e;

	/* Before: the default action, with a mask of the application's. */
	memset(&pre, 0, sizeof(pre));
	pre.sa_handler = SIG_DFL;
	sigemptyset(&pre.sa_mask);
	sigaddset(&pre.sa_mask, SIGUSR2);
	CHECK(sigaction(sig, &pre, NULL) == 0);

	/* 1. Only vcpureq's handler: the old disposition comes back. */
	a = open_vm(be, sig, &e);
	if (e == -ENOENT || e == -EACCES || e == -ENODEV)
		return H_SKIP;
	CHECK_EQ(e, 0);
	CHECK(sigaction(sig, NULL, &cur) == 0);
	CHECK(cur.sa_handler != SIG_DFL);
	CHECK_EQ(vcpureq_vm_free(a), 0);
	CHECK(sigaction(sig, NULL, &cur) == 0);
	CHECK(cur.sa_handler == SIG_DFL);
	CHECK(sigismember(&cur.sa_mask, SIGUSR2) == 1);

	/* 2. Two VMs share it; the application replaces it after create. */
	a = open_vm(be, sig, &e);
	CHECK_EQ(e, 0);
	b = open_vm(be, sig, &e);
	CHECK_EQ(e, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = app_handler;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(sig, &sa, NULL) == 0);
	/* A third VM would share a handler that is no longer vcpureq's. */
	CHECK(open_vm(be, sig, &e) == NULL);
	CHECK_EQ(e, -EBUSY);
	CHECK(msg_has("replaced vcpureq's handler", NULL));
	CHECK_EQ(vcpureq_vm_free(a), 0);
	CHECK_EQ(vcpureq_vm_free(b), 0);
	CHECK(sigaction(sig, NULL, &cur) == 0);
	CHECK(cur.sa_handler == app_handler);
	CHECK(raise(sig) == 0);
	CHECK_EQ(atomic_load(&app_hits), 1);

	/* 3. The application gives it back: vcpureq can take it again. */
	CHECK(sigaction(sig, &pre, NULL) == 0);
	a = open_vm(be, sig, &e);
	CHECK_EQ(e, 0);
	CHECK_EQ(vcpureq_vm_free(a), 0);
	CHECK(sigaction(sig, NULL, &cur) == 0);
	CHECK(cur.sa_handler == SIG_DFL);
	return 0;
}

/*
 * The index accessors at exactly a full VM (max_vcpus == nr, all added):
 * vcpureq_vm_vcpu(vm, nr) is NULL, nr - 1 is the last added, by id too;
 * one more add is -ENOSPC.  Several sizes, so that the slot past the table
 * is sometimes not zero (a reader past the count would return it).
 */
TEST_BOTH(accessors_full_vm)
{
	static const unsigned int sizes[] = { 1, 2, 3, 5, 7, 8 };
	unsigned int s, i;

	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
		unsigned int nr = sizes[s];
		struct vcpureq_vm *vm;
		struct vcpureq_vcpu *v;
		int r;

		o.backend = be;
		o.max_vcpus = nr;
		if (be == VCPUREQ_BACKEND_KVM)
			o.kick = h_kick_mechanism();
		r = vcpureq_vm_open(&o, -1, &vm);
		if (r == -ENOENT || r == -EACCES || r == -ENODEV)
			return H_SKIP;
		CHECK_EQ(r, 0);
		CHECK_EQ(vcpureq_vm_max_vcpus(vm), nr);
		for (i = 0; i < nr; i++)
			CHECK_EQ(vcpureq_vcpu_create(vm, 10 + i, NULL), 0);
		CHECK_EQ(vcpureq_vm_nr_vcpus(vm), nr);
		CHECK(vcpureq_vm_vcpu(vm, nr) == NULL);
		CHECK(vcpureq_vm_vcpu(vm, nr + 1) == NULL);
		v = vcpureq_vm_vcpu(vm, nr - 1);
		CHECK(v != NULL);
		CHECK_EQ(vcpureq_vcpu_index(v), nr - 1);
		CHECK_EQ(vcpureq_vcpu_id(v), 10 + nr - 1);
		CHECK(vcpureq_vm_vcpu_by_id(vm, 10 + nr - 1) == v);
		CHECK(vcpureq_vm_vcpu_by_id(vm, 10 + nr) == NULL);
		CHECK_EQ(vcpureq_vcpu_create(vm, 10 + nr, NULL), -ENOSPC);
		CHECK_EQ(vcpureq_vm_nr_vcpus(vm), nr);
		CHECK(vcpureq_vm_vcpu(vm, nr) == NULL);
		CHECK_EQ(vcpureq_vm_free(vm), 0);
	}
	return 0;
}

/*
 * The publish order of a new vCPU (slot, then count) while a reader
 * loops: every index below the count it read gives a whole vCPU (not
 * NULL, its index, the id it was added with), and a broadcast that starts
 * after the count was read reaches the last of them.  Many VMs of many
 * adds; the KVM backend's add (KVM_CREATE_VCPU, mmap) is the slower, so
 * a count published too early is open longest there.
 */
#define PUB_ROUNDS 30
#define PUB_VCPUS 100
/* The ids: not the indexes (a mix-up shows), and below arm64's
 * KVM_MAX_VCPU_IDS (512; x86's is 4096). */
#define PUB_ID0 200
#define REQ_B VCPUREQ_ARCH_REQ(3)

struct pub {
	struct vcpureq_vm *_Atomic vm;
	_Atomic uint64_t iter; /* reader loops: it reloads vm in each */
	_Atomic int done;      /* the adder has finished every round */
	_Atomic int failed;
	_Atomic uint64_t reads, broadcasts;
	char why[200];
};

static void *pub_reader(void *arg)
{
	struct pub *p = arg;
	uint64_t k = 0;

	while (!atomic_load(&p->done) && !atomic_load(&p->failed)) {
		struct vcpureq_vm *vm = atomic_load(&p->vm);
		struct vcpureq_vcpu *v;
		unsigned int n;

		atomic_fetch_add(&p->iter, 1);
		if (!vm)
			continue;
		n = vcpureq_vm_nr_vcpus(vm);
		if (!n)
			continue;
		v = vcpureq_vm_vcpu(vm, n - 1);
		if (!v || vcpureq_vcpu_index(v) != n - 1 ||
		    vcpureq_vcpu_id(v) != PUB_ID0 + n - 1) {
			snprintf(p->why, sizeof(p->why),
				 "count %u read, vCPU %u is %p (index %u, id %lu; want id %u)",
				 n, n - 1, (void *)v, v ? vcpureq_vcpu_index(v) : 0,
				 v ? vcpureq_vcpu_id(v) : 0, PUB_ID0 + n - 1);
			atomic_store(&p->failed, 1);
			break;
		}
		atomic_fetch_add_explicit(&p->reads, 1, memory_order_relaxed);
		if (++k % 16 == 0) {
			struct vcpureq_stats s0, s1;
			int r;

			/* Started after n was read: reaches index n - 1 (its
			 * request count, which only this thread raises). */
			vcpureq_vcpu_stats(v, &s0, sizeof(s0));
			r = vcpureq_make_all_cpus_request(vm, REQ_B);
			vcpureq_vcpu_stats(v, &s1, sizeof(s1));
			if (r < 0 || s1.requests_made != s0.requests_made + 1) {
				snprintf(p->why, sizeof(p->why),
					 "a broadcast (%d) after count %u left vCPU %u without the request (%llu made, was %llu)",
					 r, n, n - 1,
					 (unsigned long long)s1.requests_made,
					 (unsigned long long)s0.requests_made);
				atomic_store(&p->failed, 1);
				break;
			}
			atomic_fetch_add_explicit(&p->broadcasts, 1,
						  memory_order_relaxed);
		}
	}
	return NULL;
}

/* Wait until the reader has reloaded p->vm (two loops started after the
 * store), or stopped: then it no longer holds the VM it had. */
static void pub_sync(struct pub *p)
{
	uint64_t it = atomic_load(&p->iter);

	while (atomic_load(&p->iter) < it + 2 && !atomic_load(&p->failed))
		sched_yield();
}

TEST_BOTH(publish_slot_before_count)
{
	struct vcpureq_vm *prev = NULL;
	struct pub p;
	pthread_t t;
	int round, r;
	unsigned int i;

	memset(&p, 0, sizeof(p));
	CHECK(pthread_create(&t, NULL, pub_reader, &p) == 0);
	for (round = 0; round < PUB_ROUNDS && !atomic_load(&p.failed); round++) {
		struct vcpureq_vm_opts o = VCPUREQ_VM_OPTS_INIT;
		struct vcpureq_vm *vm;

		o.backend = be;
		o.max_vcpus = PUB_VCPUS;
		if (be == VCPUREQ_BACKEND_KVM)
			o.kick = h_kick_mechanism();
		r = vcpureq_vm_open(&o, -1, &vm);
		if (r == -ENOENT || r == -EACCES || r == -ENODEV) {
			atomic_store(&p.done, 1);
			pthread_join(t, NULL);
			return H_SKIP;
		}
		CHECK_EQ(r, 0);
		/* The reader moves to this VM; the one before is freed once
		 * the reader is out of it. */
		atomic_store(&p.vm, vm);
		if (prev) {
			pub_sync(&p);
			CHECK_EQ(vcpureq_vm_free(prev), 0);
		}
		prev = vm;
		for (i = 0; i < PUB_VCPUS && !atomic_load(&p.failed); i++) {
			CHECK_EQ(vcpureq_vcpu_create(vm, PUB_ID0 + i, NULL), 0);
			/* Let the reader run against few vCPUs too. */
			if (i % 16 == 0)
				sched_yield();
		}
	}
	atomic_store(&p.done, 1);
	pthread_join(t, NULL);
	CHECK_EQ(vcpureq_vm_free(prev), 0);
	if (atomic_load(&p.failed))
		fprintf(stderr, "publish order broken: %s\n", p.why);
	CHECK(!atomic_load(&p.failed));
	printf("%d rounds, %llu reads, %llu broadcasts\n", round,
	       (unsigned long long)atomic_load(&p.reads),
	       (unsigned long long)atomic_load(&p.broadcasts));
	CHECK(atomic_load(&p.reads) > 0);
	return 0;
}

/* The per-vCPU user pointer: NULL until set, set and read back from any
 * thread, seen (with what it points to) by the request handler on the
 * vCPU thread; NULL vCPU refused. */
TEST_BOTH(user_data_round_trip)
{
	struct vcpureq_vm_opts o = { .handle_requests = user_handler };
	struct my_vcpu m[3];
	struct h_vm h;
	unsigned int i;

	memset(m, 0, sizeof(m));
	H_VM(&h, be, 3, H_SPIN, &o);
	for (i = 0; i < 3; i++)
		CHECK(vcpureq_vcpu_user_data(vcpureq_vm_vcpu(h.vm, i)) == NULL);
	CHECK_EQ(vcpureq_vcpu_set_user_data(NULL, m), -EINVAL);
	CHECK(vcpureq_vcpu_user_data(NULL) == NULL);
	CHECK_EQ(h_start(&h), 0);
	/* Set while the vCPU threads run: the release/acquire pair makes
	 * magic visible to the handler that reads the pointer. */
	CHECK(set_user_data_all(&h, m) == 0);
	for (i = 0; i < 3; i++)
		CHECK(vcpureq_vcpu_user_data(vcpureq_vm_vcpu(h.vm, i)) == &m[i]);
	CHECK(round_trip(&h, m) == 0);
	CHECK_EQ(h_stop_all(&h), 0);
	/* Still readable after destroy, until free. */
	CHECK(vcpureq_vcpu_user_data(vcpureq_vm_vcpu(h.vm, 2)) == &m[2]);
	h_vm_destroy(&h);
	return 0;
}
