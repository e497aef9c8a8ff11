package containerdtest_test

import (
	"os"
	"strconv"
)

func containerdtestProcesses(pid int) ([]int, error) {
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		return []int{pid}, nil
	}
	return nil, nil
}
