module github.com/gopool/gopool

go 1.24.0

tool (
	github.com/go-python/gopy
	golang.org/x/tools/cmd/goimports
)

require golang.org/x/sys v0.41.0

require (
	github.com/go-python/gopy v0.5.0 // indirect
	github.com/gonuts/commander v0.1.0 // indirect
	github.com/gonuts/flag v0.1.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/mod v0.22.0 // indirect
	golang.org/x/sync v0.10.0 // indirect
	golang.org/x/tools v0.29.0 // indirect
)
