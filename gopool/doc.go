// Package gopool is the core of gopool: it starts worker processes, hands
// them tasks, collects their results, and replaces them when they die,
// retire or are killed (cancel, time limits, terminate). It knows nothing
// of what runs in a worker: payloads are opaque bytes, and the protocol
// with a worker is in protocol.go.
//
// The files, by what they hold:
//
//	pool.go      Pool, its options and life cycle (Close, Terminate, Join)
//	job.go       jobs and results: Submit, Collect (two-phase), Ack, Discard
//	schedule.go  which worker gets which task; writing tasks to channels
//	worker.go    one worker: its messages, its death, time limits
//	wait.go      waiting for results: the doorbell, the collector, spinning
//	cancel.go    Cancel
//	spawn.go     starting processes (fork+exec from one locked thread)
//	child.go     Child, a process that runs a job of its own
//
// Shared-memory objects (a worker's channel, the doorbell, queues, events,
// robust locks) are in the subpackage shm. ARCHITECTURE.md at the top of
// the repository draws a task's journey through all of it.
package gopool
