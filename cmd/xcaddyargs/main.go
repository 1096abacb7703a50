// Command xcaddyargs turns xcaddy.json, the build manifest, into the command
// line of `xcaddy build` (xcaddy itself reads no config file). Its fields
// mirror the JSON tags of xcaddy.Builder.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

type manifest struct {
	CaddyVersion string `json:"caddy_version"`
	Plugins      []struct {
		ModulePath string `json:"module_path"`
		Version    string `json:"version"`
	} `json:"plugins"`
	Replacements []struct {
		Old string `json:"old"`
		New string `json:"new"`
	} `json:"replacements"`
	RaceDetector bool   `json:"race_detector"`
	BuildFlags   string `json:"build_flags"`
}

func main() {
	file := flag.String("f", "xcaddy.json", "the build manifest")
	output := flag.String("o", "caddy", "the binary to write")
	flag.Parse()
	b, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", *file, err)
		os.Exit(1)
	}
	if m.CaddyVersion == "" {
		fmt.Fprintf(os.Stderr, "%s: caddy_version is required\n", *file)
		os.Exit(1)
	}
	repl := map[string]string{}
	for _, r := range m.Replacements {
		repl[r.Old] = r.New
	}
	args := []string{"build", m.CaddyVersion, "--output", *output}
	for _, p := range m.Plugins {
		with := p.ModulePath
		if p.Version != "" {
			with += "@" + p.Version
		}
		if r, ok := repl[p.ModulePath]; ok {
			with += "=" + r
		}
		args = append(args, "--with", with)
	}
	fmt.Println(strings.Join(args, " "))
}
