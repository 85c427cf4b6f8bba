/*
 * vcpureq.pml -- the vCPU-request protocol of vcpureq as implemented in
 * src/make_request.c, src/kick.c, src/run.c, src/block.c, src/vcpu_mode.c and src/request.c, under
 * sequential consistency.  Weak-memory effects (store buffers and the
 * fences that tame them) are the subject of vcpureq_tso.pml.
 *
 * Granularity: every d_step/atomic below is ONE shared-memory access of the
 * C code (a load, a store or a locked RMW) together with the thread-local
 * computation around it, except for five groups of consecutive accesses of
 * one thread that are merged into one step; README.md ("Granularity") shows
 * why each merge keeps the outcomes that matter: process_requests(); a
 * requester's OR of the bit and its store of the hint; the final check's
 * three loads (and the start of KVM_RUN); check_block()'s reads; and the
 * return from KVM_RUN with exit_guest_mode()'s store, epoch bump,
 * ack_waiters load and futex_wake.
 *
 * Sizes (all #define-able: spin -DNV=1 -DNR=2 ... -a vcpureq.pml):
 *   NV  vCPU threads               NR  requester threads
 *   VB  loop iterations of each vCPU (run / block / walk): keeps it finite
 *   RB  requests made by each requester
 * KINDS: the request kinds a requester chooses from (a sum of):
 *   1  K_PLAIN    a generic request (bit 0) with flags none / WAIT /
 *                 NO_WAKEUP / WAIT|NO_WAKEUP (= TLB_FLUSH)
 *   2  K_NOACT    OUTSIDE_GUEST_MODE (NO_ACTION | WAIT | NO_WAKEUP)
 *   4  K_UNBLOCK  UNBLOCK
 *   8  K_DEAD     VM_DEAD (of all vCPUs; at most once per run)
 *   16 K_REPLACE  replace the walked structure, TLB_FLUSH of all vCPUs,
 *                 then poison the old structure
 * Each request goes to one vCPU (vcpureq_request) or to all (broadcast);
 * -DBCAST_ONLY keeps the broadcasts only.  The vCPU chooses among
 * vcpureq_vcpu_run() (one pass), block and a lockless walk; -DNO_BLOCK and
 * -DNO_WALK remove the last two.  With RB == 1 the requesters' choices are
 * made in init in non-decreasing order (requesters are interchangeable);
 * -DNO_SYMMETRY turns that off.
 *
 * Properties.  Each assertion first stores its condition in a ghost bit
 * named after the property, so pan says e.g. "assertion violated ok_b":
 *   ok_a   (a) no stranded request, at guest entry
 *   ok_a2  (a) no stranded request, once every requester has finished
 *   ok_b   (b) WAIT acknowledgement
 *   ok_c   (c) NO_WAKEUP never wakes a sleeper
 *   ok_d   (d) no lost wake-up, once every requester has finished
 *   ok_e   (e) VM_DEAD is final
 *   ok_f   (f) legal mode transitions only
 *   ok_g   (g) a lockless reader never reads poisoned data
 * A WAIT requester that never returns is a deadlock: "invalid end state".
 *
 * Variants that must give a counterexample (run.sh checks which):
 *   SNAP_AFTER_CAS   epoch snapshot taken after the mode read and the CAS
 *   LOADS_REORDERED  the relaxed epoch-snapshot load performed after the
 *                    relaxed mode load, which C11 allows for two relaxed
 *                    loads and ARM64/POWER do (x86 does not)
 *   WAIT_LITERAL     (b) strengthened to "every instance that the
 *                    requester's mode read saw", which the epoch scheme does
 *                    not promise (README.md)
 *   GUEST_WAIT       guest code of the thread backend (the guest callback)
 *                    makes a WAIT request of the other vCPUs
 *   NO_FINAL_CHECK   the requests are not read after [V] (the mutant
 *                    VCPUREQ_MUTANT_NO_FINAL_CHECK of src/run.c)
 * Option that must still pass:
 *   THREAD_BACKEND   the pending kick is the handler's "kicked" flag,
 *                    cleared before IN_GUEST_MODE is published
 */

#ifndef NV
#define NV 2
#endif
#ifndef NR
#define NR 2
#endif
#ifndef VB
#define VB 3
#endif
#ifndef RB
#define RB 2
#endif

#define K_PLAIN   1
#define K_NOACT   2
#define K_UNBLOCK 4
#define K_DEAD    8
#define K_REPLACE 16
#ifndef KINDS
#define KINDS 31
#endif

#define NS (1 + NR * RB)     /* structures: the first + one per replacement */
#define ALLV ((1 << NV) - 1)

/* vcpu->mode */
#define OUT     0
#define IN      1
#define EXITING 2
#define READING 3

/* request bits (bit index = request number) */
#define NB     3
#define I_GEN  0             /* a generic request, e.g. TLB_FLUSH */
#define I_DEAD 1             /* VM_DEAD */
#define I_UNBL 2             /* UNBLOCK */
#define B_GEN  1
#define B_DEAD 2
#define B_UNBL 4

/* request flags */
#define F_NOWAKE 1
#define F_WAIT   2
#define F_NOACT  4

/* sleep_state */
#define AWAKE    0
#define SLEEPING 1
#define WOKEN    2

/* ---- protocol words ---- */
byte req[NV];       /* vcpu->requests */
byte mode[NV];      /* vcpu->mode */
byte epoch[NV];     /* vcpu->exit_epoch (at most VB bumps: never wraps) */
byte ackw[NV];      /* vcpu->ack_waiters */
bit  hint[NV];      /* vcpu->wake_hint */
byte sleep[NV];     /* vcpu->sleep_state */
bit  kick[NV];      /* a kick signal is pending for the vCPU thread */
bit  dead;          /* vm->dead */
byte ptr;           /* the structure lockless walks read */
bit  poisoned[NS];  /* freed structures */

/* ---- futex wait queues ---- */
bit  sq[NV];        /* vCPU i sleeps in futex_wait(&sleep_state) */
byte eq[NR];        /* requester r sleeps in futex_wait(&exit_epoch[eq[r]-1]) */

/* ---- ghosts (the protocol never reads them) ---- */
byte nxt = 1;       /* the next structure to install */
byte pend[NV * NB]; /* requesters whose setting of bit b of vCPU i is pending */
byte arm[NV * NB];  /* ... and whose kick of vCPU i is complete */
byte wpend[NV];     /* bits of vCPU i pending from requests without NO_WAKEUP */
byte watch[NR];     /* (b) vCPUs whose current instance the WAIT must outlive */
bit  in_guest[NV];  /* past the final check: in KVM_RUN */
bit  dead_done;     /* a VM_DEAD request has returned */
bit  dead_taken;    /* VM_DEAD was chosen (once per run) */
byte ndone;         /* requesters that have finished */
#if RB == 1 && !defined(GUEST_WAIT) && !defined(NO_SYMMETRY)
#define PRECHOSEN
byte choice[NR];    /* each requester's one request (init chooses) */
#endif
#ifdef GUEST_WAIT
bit  gcall[NV];     /* vCPU i's guest code is inside a request call */
#endif

bit ok_a = 1, ok_a2 = 1, ok_b = 1, ok_c = 1, ok_d = 1, ok_e = 1, ok_f = 1,
    ok_g = 1;

/* (f) OUT->IN, OUT->READING, IN->EXITING, IN/EXITING/READING->OUT only */
inline setmode(i, m)
{
	ok_f = ((mode[i] == OUT && (m == IN || m == READING)) ||
		(mode[i] == IN && (m == EXITING || m == OUT)) ||
		(mode[i] == EXITING && m == OUT) ||
		(mode[i] == READING && m == OUT));
	assert(ok_f);
	mode[i] = m
}

/* the vCPU consumes bit bi (check_request's test + clear, or clear) */
inline clrbit(i, bi)
{
	req[i] = req[i] & ~(1 << bi);
	pend[i * NB + bi] = 0;
	arm[i * NB + bi] = 0;
	wpend[i] = wpend[i] & ~(1 << bi)
}

/* x = the first vCPU of mask m at or above x, NV if none */
inline nextv(m, x)
{
	do
	:: x < NV && !(m & (1 << x)) -> x++
	:: else -> break
	od
}

/* ================ requester side (make_request.c, kick.c) ================ */

/* phases of request_mask(), one shared access each */
#define P_XCHG   1   /* REPLACE: publish the new structure (xchg)   */
#define P_DEADST 2   /* VM_DEAD: vm->dead = 1, before the bits       */
#define P_OR     3   /* OR the bit, set the wake hint (release)      */
                     /* ---- [R] ----                                */
#define P_SLEEP  5   /* read sleep_state                             */
#define P_CASS   6   /* CAS SLEEPING -> WOKEN                        */
#define P_FWAKE  7   /* futex_wake(&sleep_state, 1)                  */
#define P_SNAP   8   /* snapshot the exit epoch                      */
#define P_MODE   9   /* read the mode                                */
#define P_CASM   10  /* CAS IN_GUEST -> EXITING                      */
#define P_SIG    11  /* tgkill                                       */
#define P_LATE   12  /* SNAP_AFTER_CAS / LOADS_REORDERED: snapshot   */
#define P_WAIT1  13  /* wait_ack: epoch check, else ack_waiters++    */
                     /* ---- [W] ----                                */
#define P_WAIT2  14  /* epoch check, else futex_wait(&epoch, snap)   */
#define P_WAIT3  15  /* asleep on the epoch futex                    */
#define P_DONE   16  /* the request returns                          */

/* [R] comes right after the last store: (b)'s instances are those in
 * progress now */
inline fence_R(w, tm, fl, k)
{
	watch[w] = 0;
	if
	:: fl & F_WAIT ->
		for (k : 0 .. NV - 1) {
			if
			:: (tm & (1 << k)) && mode[k] != OUT ->
				watch[w] = watch[w] | (1 << k)
			:: else
			fi
		}
	:: else
	fi;
	k = 0
}

/* kick_after_fence() of target t is over: ghost for (a), then the next
 * target, or the waits once every target is kicked */
inline kick_done(w, tm, bi, fl, t, wm, ph, s, old)
{
	if
	:: !(fl & F_NOACT) ->
		arm[t * NB + bi] = arm[t * NB + bi] | (pend[t * NB + bi] & (1 << w))
	:: else
	fi;
	s = 0; old = 0;
	t++;
	nextv(tm, t);
	if
	:: t < NV -> ph = (fl & F_NOWAKE -> P_SNAP : P_SLEEP)
	:: else ->
		t = 0;
		nextv(wm, t);
		ph = (t < NV -> P_WAIT1 : P_DONE)
	fi
}

/* wait iff WAIT and old != OUTSIDE */
inline decide(w, tm, bi, fl, t, wm, ph, s, old)
{
	if
	:: (fl & F_WAIT) && old != OUT -> wm = wm | (1 << t)
	:: else
	fi;
	kick_done(w, tm, bi, fl, t, wm, ph, s, old)
}


/*
 * A request is a choice c = kind * 8 + tsel: tsel 0 = all vCPUs (a
 * broadcast), tsel 1..NV = that one vCPU (vcpureq_request).  Kinds:
 *   0..3  a generic request with flags none, WAIT, NO_WAKEUP, both (TLB_FLUSH)
 *   4     OUTSIDE_GUEST_MODE      5  UNBLOCK
 *   6     VM_DEAD (all; once)     7  REPLACE (all)
 * C_NONE: no request (chosen only when no valid choice is left).
 */
#define C_NONE 63
#ifdef BCAST_ONLY
#define TSEL_OK(c) (((c) & 7) == 0)
#else
#define TSEL_OK(c) (((c) & 7) <= NV && (((c) & 7) == 0 || NV > 1))
#endif
/* c is a request a requester may make (dead_before: VM_DEAD is taken);
 * reaching C_NONE without a valid choice means "no request" */
#define VALID_CHOICE(c, lo, dead_before) ((c) >= (lo) && \
	(((c) == C_NONE) || \
	 (TSEL_OK(c) && \
	  ((((c) >> 3) <= 3 && (KINDS & K_PLAIN)) || \
	   (((c) >> 3) == 4 && (KINDS & K_NOACT)) || \
	   (((c) >> 3) == 5 && (KINDS & K_UNBLOCK)) || \
	   (((c) >> 3) == 6 && (KINDS & K_DEAD) && !(dead_before) && \
	    ((c) & 7) == 0) || \
	   (((c) >> 3) == 7 && (KINDS & K_REPLACE) && ((c) & 7) == 0)))))

inline decode_choice(c, tm, bi, fl, repl)
{
	if
	:: c == C_NONE -> tm = 0
	:: c != C_NONE ->
		tm = ((c & 7) == 0 -> ALLV : 1 << ((c & 7) - 1));
		if
		:: (c >> 3) <= 3 -> bi = I_GEN;
			fl = (((c >> 3) & 1) -> F_WAIT : 0) |
			     (((c >> 3) & 2) -> F_NOWAKE : 0)
		:: (c >> 3) == 4 -> bi = I_GEN; fl = F_NOACT | F_WAIT | F_NOWAKE
		:: (c >> 3) == 5 -> bi = I_UNBL; fl = 0
		:: (c >> 3) == 6 -> bi = I_DEAD; fl = F_WAIT | F_NOWAKE;
			dead_taken = 1
		:: (c >> 3) == 7 -> bi = I_GEN; fl = F_WAIT | F_NOWAKE; repl = 1
		fi
	fi
}

proctype requester(byte r)
{
	byte n = RB;
	byte tm, bi, fl, t, wm, ph, s, old, oldp;
	bit repl, late;
	byte snap[NV];

#ifdef GUEST_WAIT
	/* requester r plays the guest code of vCPU r: when that calls it, it
	 * makes vcpureq_request(TLB_FLUSH) of the other vCPUs.  Waiting for a
	 * call is a valid end state; a deadlock shows as the vCPU stuck in
	 * the call (end_guest). */
end_r:
#endif
	do
	:: ph == 0 && n == 0 -> break
#ifdef GUEST_WAIT
	:: atomic { ph == 0 && n > 0 && r < NV && gcall[r] ->
		n--;
		tm = ALLV & ~(1 << r); bi = I_GEN; fl = F_WAIT | F_NOWAKE;
#else
	:: atomic { ph == 0 && n > 0 ->
		n--;
#ifdef PRECHOSEN
		s = choice[r];
#else
		/* choose a request */
		s = 0;
		do
		:: s < C_NONE -> s++
		:: s < C_NONE && VALID_CHOICE(s, 0, dead_taken) -> break
		:: s == C_NONE -> break
		od;
#endif
		decode_choice(s, tm, bi, fl, repl);
		s = 0;
#endif
		t = 0; wm = 0;
		nextv(tm, t);
		if
		:: tm == 0 -> ph = P_DONE
		:: tm != 0 && repl -> ph = P_XCHG
		:: tm != 0 && !repl && bi == I_DEAD -> ph = P_DEADST
		:: tm != 0 && !repl && bi != I_DEAD && (fl & F_NOACT) ->
			/* no store: [R] is now */
			fence_R(r, tm, fl, s);
			ph = (fl & F_NOWAKE -> P_SNAP : P_SLEEP)
		:: tm != 0 && !repl && bi != I_DEAD && !(fl & F_NOACT) ->
			ph = P_OR
		fi }
	/* request_mask(): make every target's request, one fence [R], kick
	 * every target, then wait for every acknowledgement */
	:: d_step { ph == P_XCHG -> oldp = ptr; ptr = nxt; nxt++; ph = P_OR }
	:: d_step { ph == P_DEADST -> dead = 1; ph = P_OR }
	:: d_step { ph == P_OR ->
		/* OR the bit (release) and, unless NO_WAKEUP, set the hint
		 * (release): one step (README.md, Granularity) */
		req[t] = req[t] | (1 << bi);
		pend[t * NB + bi] = pend[t * NB + bi] | (1 << r);
		if
		:: !(fl & F_NOWAKE) ->
			wpend[t] = wpend[t] | (1 << bi);
			hint[t] = 1
		:: else
		fi;
		t++; nextv(tm, t);
		if
		:: t < NV
		:: else -> fence_R(r, tm, fl, s); t = 0; nextv(tm, t);
			ph = (fl & F_NOWAKE -> P_SNAP : P_SLEEP)
		fi }
	/* ---- kick_after_fence(t): vcpureq__wake_if_sleeping() ---- */
	:: d_step { ph == P_SLEEP ->
		s = sleep[t];
		if
		:: s == WOKEN -> kick_done(r, tm, bi, fl, t, wm, ph, s, old)
		:: s == SLEEPING -> ph = P_CASS
		:: else -> ph = P_SNAP
		fi }
	:: d_step { ph == P_CASS ->
		if
		:: sleep[t] == SLEEPING ->
			sleep[t] = WOKEN;
			ok_c = !(fl & F_NOWAKE); assert(ok_c);
			ph = P_FWAKE
		:: else ->
			s = sleep[t];
			if
			:: s == WOKEN -> kick_done(r, tm, bi, fl, t, wm, ph, s, old)
			:: else -> ph = P_SNAP
			fi
		fi }
	:: d_step { ph == P_FWAKE ->
		ok_c = !(fl & F_NOWAKE); assert(ok_c);
		sq[t] = 0;
		kick_done(r, tm, bi, fl, t, wm, ph, s, old) }
	/* ---- the snapshot, the mode, the CAS, the signal ---- */
#if defined(SNAP_AFTER_CAS) || defined(LOADS_REORDERED)
	:: d_step { ph == P_SNAP -> late = 1; ph = P_MODE }
#else
	:: d_step { ph == P_SNAP -> snap[t] = epoch[t]; ph = P_MODE }
#endif
	:: d_step { ph == P_MODE ->
		old = mode[t];
#ifdef WAIT_LITERAL
		if
		:: (fl & F_WAIT) && old != OUT -> watch[r] = watch[r] | (1 << t)
		:: else
		fi;
#endif
#ifdef LOADS_REORDERED
		ph = P_LATE
#else
		if
		:: old == IN -> ph = P_CASM
		:: else ->
#ifdef SNAP_AFTER_CAS
			ph = P_LATE
#else
			decide(r, tm, bi, fl, t, wm, ph, s, old)
#endif
		fi
#endif
		}
	:: d_step { ph == P_LATE ->
		snap[t] = epoch[t];
#ifdef LOADS_REORDERED
		if
		:: old == IN && late -> late = 0; ph = P_CASM
		:: else -> late = 0; decide(r, tm, bi, fl, t, wm, ph, s, old)
		fi
#else
		late = 0;
		decide(r, tm, bi, fl, t, wm, ph, s, old)
#endif
		}
	:: d_step { ph == P_CASM ->
		if
		:: mode[t] == IN -> setmode(t, EXITING); ph = P_SIG
		:: else ->
			old = mode[t];
			if
			:: late -> ph = P_LATE
			:: else -> decide(r, tm, bi, fl, t, wm, ph, s, old)
			fi
		fi }
	:: d_step { ph == P_SIG ->
		kick[t] = 1;
		old = IN;
		if
		:: late -> ph = P_LATE
		:: else -> decide(r, tm, bi, fl, t, wm, ph, s, old)
		fi }
	/* ---- wait_ack(t, snap[t]) for each t in wm ---- */
	:: d_step { ph == P_WAIT1 ->
		if
		:: epoch[t] != snap[t] -> t++; nextv(wm, t);
			ph = (t < NV -> P_WAIT1 : P_DONE)
		:: else -> ackw[t]++; ph = P_WAIT2
		fi }
	:: d_step { ph == P_WAIT2 ->
		if
		:: epoch[t] != snap[t] ->
			ackw[t]--; t++; nextv(wm, t);
			ph = (t < NV -> P_WAIT1 : P_DONE)
		:: else -> eq[r] = t + 1; ph = P_WAIT3   /* futex_wait */
		fi }
	:: d_step { ph == P_WAIT3 && eq[r] == 0 -> ph = P_WAIT2 }
	/* ---- the request returns: (b), (e); REPLACE frees the old
	 * structure ---- */
	:: d_step { ph == P_DONE ->
		if
		:: fl & F_WAIT -> ok_b = (watch[r] == 0); assert(ok_b)
		:: else
		fi;
		if
		:: bi == I_DEAD && tm != 0 ->
			for (t : 0 .. NV - 1) {
				ok_e = ok_e && !in_guest[t]
			};
			assert(ok_e);
			dead_done = 1
		:: else
		fi;
		if
		:: repl -> poisoned[oldp] = 1
		:: else
		fi;
#ifdef GUEST_WAIT
		gcall[r] = 0;
#endif
		watch[r] = 0;
		oldp = 0; repl = 0; tm = 0; bi = 0; fl = 0; t = 0; wm = 0;
		for (t : 0 .. NV - 1) { snap[t] = 0 };
		t = 0;
		if
		:: n == 0 -> ndone++
		:: else
		fi;
		ph = 0 }
	od
}

/* ========================= vCPU side (run.c etc.) ========================= */

/* dead(); process_requests(): hint exchange, check_request(VM_DEAD) ||
 * dead(), clear UNBLOCK, the handler's check_request(GEN).
 * why: 0 enter, 1 -EIO (VM dead), 2 VCPUREQ_RUN_REQUEST */
inline process_requests(i, why)
{
	if
	:: dead -> why = 1
	:: else ->
		hint[i] = 0;
		why = 0;
		if
		:: req[i] & B_DEAD -> clrbit(i, I_DEAD); why = 1
		:: else
		fi;
		if
		:: why == 0 && req[i] != 0 && dead -> why = 1
		:: else
		fi;
		if
		:: why == 0 && req[i] != 0 ->
			clrbit(i, I_UNBL);
			if
			:: req[i] & B_GEN -> clrbit(i, I_GEN)
			:: else
			fi;
			if
			:: req[i] != 0 -> why = 2
			:: else
			fi
		:: else
		fi
	fi
}

/* check_block(): dead, check_request(UNBLOCK), hint exchange */
inline check_block(i, why)
{
	why = 0;
	if
	:: dead -> why = why | 1
	:: else
	fi;
	if
	:: req[i] & B_UNBL -> clrbit(i, I_UNBL); why = why | 2
	:: else
	fi;
	if
	:: hint[i] -> hint[i] = 0; why = why | 4
	:: else
	fi
}

/* vcpureq__exit_guest_mode(): store OUTSIDE (release); epoch++ (release);
 * [E]; if ack_waiters: futex_wake(&exit_epoch, all).  Ghost (b): the
 * instance a WAIT request waits for has ended. */
inline exit_guest_mode(i, k)
{
	setmode(i, OUT);
	epoch[i]++;
	for (k : 0 .. NR - 1) {
		watch[k] = watch[k] & ~(1 << i);
		if
		:: ackw[i] > 0 && eq[k] == i + 1 -> eq[k] = 0
		:: else
		fi
	};
	k = 0
}

proctype vcpu(byte i)
{
	byte budget = VB;
	byte why, p, k;
	bit dead_seen;   /* ghost: vm->dead was set before this entry's [V] */

loop:
	if
	/* vcpureq_vcpu_run(), one pass of its loop */
	:: atomic { budget > 0 -> budget--; process_requests(i, why) };
		goto l_entry
#ifndef NO_BLOCK
	/* vcpureq_vcpu_block() (halt polling left out): the first check */
	:: d_step { budget > 0 -> budget--; check_block(i, why) };
		goto l_block
#endif
#ifndef NO_WALK
	/* walk_lockless_begin(): mode = READING; [V] (no-op under SC) */
	:: d_step { budget > 0 -> budget--; setmode(i, READING) };
		goto l_walk
#endif
	:: budget == 0 -> goto quit
	fi;

l_entry:
	if
	:: why == 1 -> goto stopped   /* -EIO: VM dead; never enters again */
	:: why == 2 -> why = 0; goto loop   /* VCPUREQ_RUN_REQUEST */
#ifdef THREAD_BACKEND
	:: why == 0 -> kick[i] = 0   /* kicked = 0, before the publish */
	fi;
	/* enter_guest_mode(): publish IN_GUEST_MODE; [V] (no-op under SC) */
	atomic { setmode(i, IN); dead_seen = dead };
#else
	/* enter_guest_mode(): publish IN_GUEST_MODE; [V] (no-op under SC) */
	:: d_step { why == 0 -> setmode(i, IN); dead_seen = dead }
	fi;
#endif
	/* the final check (mode, requests, dead); then KVM_RUN starts */
	d_step {
		if
#ifndef NO_FINAL_CHECK
		:: mode[i] != IN || req[i] != 0 || dead -> why = 3   /* abort */
#else
		/* mutant: the requests are not read after [V] */
		:: mode[i] != IN || dead -> why = 3
#endif
		:: else ->
			/* (e) */
			ok_e = !dead_seen && !dead_done;
			assert(ok_e);
			/* (a) a request whose requester has finished its kick is
			 * pending: then a kick is pending (KVM_RUN returns at
			 * once) or the mode is EXITING (the CAS winner's signal
			 * is on its way) */
			for (p : 0 .. NB - 1) {
				ok_a = ok_a && (arm[i * NB + p] == 0)
			};
			ok_a = ok_a || kick[i] || mode[i] == EXITING;
			assert(ok_a);
			p = 0;
			in_guest[i] = 1
		fi;
		dead_seen = 0
	};
end_guest:
	if
	/* abort: OUTSIDE, epoch++ */
	:: atomic { why == 3 -> why = 0; exit_guest_mode(i, k) }
	/* -EINTR: the kick was pending at entry or hit the running guest;
	 * the signal is drained; OUTSIDE, epoch++ (one step: README.md) */
	:: atomic { why == 0 && kick[i] -> kick[i] = 0; in_guest[i] = 0;
		exit_guest_mode(i, k) }
	/* an exit to user space (I/O, HLT, ...); OUTSIDE, epoch++ */
	:: atomic { why == 0 && budget > 0 -> in_guest[i] = 0;
		exit_guest_mode(i, k) }
	/* (a) once every requester has finished nobody will kick: a request
	 * pending now, with no kick pending, is stranded in the guest */
	:: d_step { why == 0 && ndone == NR && req[i] != 0 && !kick[i] ->
		ok_a2 = 0; assert(ok_a2) };
		goto quit
#ifdef GUEST_WAIT
	/* the guest callback calls vcpureq_request(TLB_FLUSH) of the other
	 * vCPUs (requester i plays the call); it cannot exit meanwhile */
	:: why == 0 && budget > 0 && NV > 1 && i < NR ->
		budget--;
		gcall[i] = 1;
		(gcall[i] == 0);
		goto end_guest
#endif
	fi;
	goto loop;

l_block:
	if
	:: why -> goto bret
	:: else
	fi;
bloop:
	sleep[i] = SLEEPING;
	/* [S]: no-op under SC */
	d_step { check_block(i, why) };
	if
	:: why -> goto bdone
	/* futex_wait(&sleep_state, SLEEPING) */
	:: d_step { why == 0 && sleep[i] == SLEEPING -> sq[i] = 1 };
end_sleep:
		if
		:: (sq[i] == 0)
		/* woken by the CAS winner's futex_wake, or by a late futex_wake
		 * of an earlier wake-up (spurious): either way, check again */
		/* (d) once every requester has finished nobody will wake us:
		 * asleep with a waking request pending is a lost wake-up */
		:: d_step { sq[i] && ndone == NR && (hint[i] || wpend[i] != 0) ->
			ok_d = 0; assert(ok_d) };
			goto quit
		fi;
		goto bloop
	:: d_step { why == 0 && sleep[i] != SLEEPING -> skip };   /* EAGAIN */
		goto bloop
	fi;
bdone:
	sleep[i] = AWAKE;
bret:
	/* the VMM acts on the reason: vcpureq_vcpu_run() */
	atomic { why = 0; process_requests(i, why) };
	goto l_entry;

l_walk:
	p = ptr;
	d_step { ok_g = !poisoned[p]; assert(ok_g); p = 0 };   /* dereference */
	/* walk_lockless_end(): OUTSIDE, epoch++ */
	atomic { exit_guest_mode(i, k) };
	goto loop;

stopped:
quit:
	skip
}

init
{
	byte k, c, lo;
	atomic {
#ifdef PRECHOSEN
		/* Requesters are interchangeable (their id only names ghost
		 * slots), so the runs where requester r's request is a later
		 * choice than requester r+1's are mirror images of runs
		 * explored here: choose c[0] <= c[1] <= ... */
		lo = 0;
		for (k : 0 .. NR - 1) {
			c = lo;
			do
			:: c < C_NONE -> c++
			:: c < C_NONE && VALID_CHOICE(c, lo,
					(k > 0 && choice[k - 1] == 48)) -> break
			:: c == C_NONE -> break
			od;
			choice[k] = c;
			lo = c
		};
		c = 0; lo = 0;
#endif
		for (k : 0 .. NV - 1) { run vcpu(k) };
		for (k : 0 .. NR - 1) { run requester(k) };
		k = 0
	}
}
