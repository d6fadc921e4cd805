module github.com/sluice-flow/sluice

go 1.26.8
