/* SPDX-License-Identifier: MIT */
/* Helpers shared by the peer re-implementations. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "peers.h"

void peer_vcpu_init(struct peer_vcpu *pv)
{
	/* No peer uses KVM_SET_SIGNAL_MASK in the configuration followed;
	 * NULL removes the mask vcpureq_vcpu_bind() may have left. */
	if (ioctl(pv->fd, KVM_SET_SIGNAL_MASK, NULL) < 0)
		b_die("KVM_SET_SIGNAL_MASK(NULL) on vCPU %u", pv->id);
	__atomic_store_n(&pv->run->immediate_exit, 0, __ATOMIC_RELAXED);
	atomic_store(&pv->tid, b_gettid());
}

uint64_t peer_signals(struct bc_ctx *c)
{
	return atomic_load(&c->signals);
}

void peer_halt_wait(void)
{
	pause();
}

void peer_sigaction(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	/* SA_SIGINFO (vmm_sys_util's register_signal_handler()) only changes
	 * the handler's arguments, which ours ignore: use the plain form. */
	sa.sa_handler = fn;
	sa.sa_flags = flags & ~SA_SIGINFO;
	if (sigaction(sig, &sa, NULL) < 0)
		b_die("sigaction(%d)", sig);
}

void peer_kill(struct bc_ctx *c, pthread_t t, int sig)
{
	atomic_fetch_add_explicit(&c->signals, 1, memory_order_relaxed);
	pthread_kill(t, sig);
}

int bc_ctx_init(struct bc_ctx *c, struct h_vm *h, unsigned int n)
{
	struct vcpureq_vm_opts o;
	unsigned int i;

	memset(c, 0, sizeof(*c));
	c->h = h;
	c->n = n;
	c->recs = calloc(n, sizeof(*c->recs));
	c->pv = calloc(n, sizeof(*c->pv));
	if (!c->recs || !c->pv)
		b_die("out of memory");
	o = vr_opts(c->recs);
	if (b_vm(h, n, H_SPIN, &o)) {
		free(c->recs);
		free(c->pv);
		return H_SKIP;
	}
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vcpureq_vm_vcpu(h->vm, i);

		c->pv[i].id = i;
		c->pv[i].fd = vcpureq_vcpu_kvm_fd(v);
		c->pv[i].run = vcpureq_vcpu_kvm_run(v);
	}
	return 0;
}

void bc_ctx_free(struct bc_ctx *c)
{
	h_vm_destroy(c->h);
	free(c->pv);
	free(c->recs);
}

void bc_time_pause(const struct bc_impl *im, struct bc_ctx *c,
		   struct bc_timed *out)
{
	uint64_t s0 = im->signals(c), c0 = b_thread_cpu_ns();

	out->t0 = b_now();
	im->pause(c);
	out->t1 = b_now();
	out->cpu = b_thread_cpu_ns() - c0;
	out->sig = im->signals(c) - s0;
}

uint64_t vq_lib_signals(struct bc_ctx *c)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < c->n; i++) {
		struct vcpureq_stats st;

		vcpureq_vcpu_stats(vcpureq_vm_vcpu(c->h->vm, i), &st, sizeof(st));
		sum += st.signals_sent;
	}
	return sum;
}
