package gopool

import "syscall"

// The protocol between the core and a worker, over the worker's
// shm.Channel. Tasks go down, results come up; every message has a kind and
// a tag (see shm.Channel for the message layout).
//
// Down: MsgInit once, first (its payload is Options.Spec.Init); then MsgTask
// per task, tagged with the worker's sequence number for it (1, 2, ...);
// MsgStop last, when the worker is to exit.
//
// Up: per task, in the order of the tasks, either MsgResultOK or
// MsgResultError (the worker's encoding of the value or the error), or
// MsgSkipped for a task revoked before it began (shm.Channel.Revoke), each
// tagged with the task's sequence number. A worker whose initialisation
// failed sends MsgInitFailed (the error) and exits. MsgRetiring says the
// worker runs nothing more (for instance it went over its memory limit):
// tasks it holds and has not answered never began.
const (
	MsgInit = 1
	MsgTask = 2
	MsgStop = 3

	MsgResultOK    = 16
	MsgResultError = 17
	MsgInitFailed  = 18
	MsgRetiring    = 19
	MsgSkipped     = 20
)

// A worker's phase, which it records in its channel (shm.Channel.Phase):
// a worker that exits before it is ready (its initializer exits) fails the
// pool, as one whose initialisation raises does; one killed by a signal
// before it is ready is replaced, unless several in a row are
// (cannotStartWorkersLocked).
const (
	PhaseStarting     = 0
	PhaseInitializing = 1
	PhaseReady        = 2
)

// SoftLimitSignal tells a worker that the task it runs has passed its
// soft time limit; the task's sequence number is in its channel
// (shm.Channel.SoftLimit), so that a worker that has moved on to another
// task ignores it. A real-time signal (SIGRTMIN+6 with glibc), which user
// code is unlikely to use.
const SoftLimitSignal = syscall.Signal(40)

// The descriptors a worker is started with.
const (
	ChannelFd        = 3 // the worker's shm.Channel
	DoorbellFd       = 4 // the pool's shm.Doorbell
	FirstInheritedFd = 5 // WorkerSpec.Inherit[0]; the others follow
)
