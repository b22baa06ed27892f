package pybind

import "github.com/gopool/gopool/gopool/shm"

var events = newRegistry[*shm.Event]()

// EventNew creates a process-shared event; see shm.Event.
func EventNew() (int64, error) {
	e, err := shm.NewEvent()
	if err != nil {
		return result(int64(0), err)
	}
	return events.add(e), nil
}

// EventOpen maps an event from an inherited descriptor.
func EventOpen(fd int64) (int64, error) {
	e, err := shm.OpenEvent(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return events.add(e), nil
}

// EventFd returns the descriptor of an event's memory file.
func EventFd(event int64) (int64, error) {
	e, err := events.get(event)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(e.Fd()), nil
}

// EventIsSet reports whether the event is set.
func EventIsSet(event int64) (bool, error) {
	e, err := events.get(event)
	if err != nil {
		return result(false, err)
	}
	return e.IsSet(), nil
}

// EventSet sets the event and wakes its waiters.
func EventSet(event int64) (int64, error) {
	e, err := events.get(event)
	if err != nil {
		return result(int64(0), err)
	}
	e.Set()
	return 0, nil
}

// EventClear clears the event.
func EventClear(event int64) (int64, error) {
	e, err := events.get(event)
	if err != nil {
		return result(int64(0), err)
	}
	e.Clear()
	return 0, nil
}

// EventWait waits up to timeoutMs for the event and reports whether it is set.
func EventWait(event int64, timeoutMs int) (bool, error) {
	e, err := events.get(event)
	if err != nil {
		return result(false, err)
	}
	return e.Wait(millis(timeoutMs)), nil
}

// EventRelease unmaps an event from this process and forgets its id.
func EventRelease(event int64) (int64, error) {
	e, err := events.take(event)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), e.Close())
}
