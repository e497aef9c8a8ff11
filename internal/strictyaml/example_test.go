package strictyaml_test

import (
	"fmt"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

// Decode a file into a struct and print every problem, located.
func ExampleUnmarshal() {
	type user struct {
		Name string `yaml:"name"`
		UID  int    `yaml:"uid"`
	}
	var cfg struct {
		Users []user `yaml:"users"`
	}
	data := []byte("users:\n  - name: alice\n    uid: many\n  - nmae: bob\n")
	res := strictyaml.Unmarshal(data, &cfg, strictyaml.Options{Strict: true})
	for _, p := range res.Problems {
		fmt.Println(strictyaml.Format("users.yaml", p.Pos, p.Warning, p.Field, p.Message))
	}
	fmt.Println(cfg.Users[0].Name, res.Positions.At("users[1].name"))
	// Output:
	// users.yaml:3:10: users[0].uid: want a whole number, got "many"
	// users.yaml:4:5: users[1].nmae: unknown key; did you mean "name"?
	// alice {4 5}
}
