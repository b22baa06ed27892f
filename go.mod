module github.com/gopool/gopool

go 1.24
