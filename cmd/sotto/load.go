package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/sotto-voice/sotto/internal/floor"
	"github.com/sotto-voice/sotto/loadtest"
)

// errLoadFailed is returned when callers failed to join, frames failed to
// decrypt or calls were lost for good: the run happened, and its exit
// status says it missed.
var errLoadFailed = errors.New("load run failed: callers did not join, frames did not decrypt or calls were lost")

type loadOptions struct {
	cfg      loadtest.Config
	secret   string
	audio    string
	jsonPath string
	plotPath string
	logLevel string
	floor    bool

	profilePath string
	cpuProfile  string
}

func parseLoad(args []string, stderr io.Writer) (loadOptions, error) {
	var o loadOptions
	fs := newFlagSet("load", "load [flags]", stderr)
	fs.StringVar(&o.cfg.URL, "url", loadtest.DefaultURL, "server base URL")
	fs.StringVar(&o.secret, "secret", "", "the server's token secret, to mint callers' tokens (default: the development secret)")
	fs.IntVar(&o.cfg.Rooms, "rooms", loadtest.DefaultRooms, "rooms")
	fs.IntVar(&o.cfg.Callers, "callers", loadtest.DefaultCallers, "callers per room")
	fs.DurationVar(&o.cfg.Duration, "duration", loadtest.DefaultDuration, "steady part of the run, after every caller has joined")
	fs.Float64Var(&o.cfg.Ramp, "ramp", loadtest.DefaultRamp, "joins started per second")
	fs.BoolVar(&o.cfg.RelayOnly, "relay-only", false, "send all media through the server's TURN relay")
	fs.Float64Var(&o.cfg.LossUp, "loss-up", 0, "fraction of packets (0 to 1) each caller's media socket drops on sending: injected uplink loss")
	fs.Float64Var(&o.cfg.LossDown, "loss-down", 0, "fraction of packets (0 to 1) each caller's media socket drops on receiving: injected downlink loss")
	fs.BoolVar(&o.cfg.Churn, "churn", false, "callers leave and rejoin during the run (one every 2 s), exercising rekeys")
	fs.DurationVar(&o.cfg.StallAfter, "stall-after", loadtest.DefaultStallAfter, "a caller whose frames stop for longer, while another caller talks in its room, counts as interrupted")
	fs.BoolVar(&o.cfg.Rejoin, "rejoin", false, "join a caller again, with backoff, when its call ends on its own (as an application would); without it that call is lost")
	fs.DurationVar(&o.cfg.ResumeWindow, "resume-window", 0, "how long a caller's SDK rejoins a call the server lost by itself before the call ends (0: the SDK's default, 60 s; negative: never)")
	fs.StringVar(&o.audio, "audio", "", "Ogg Opus file of 20 ms packets to play (default: the clip in loadtest/audio)")
	fs.StringVar(&o.jsonPath, "json", "", "write the report as JSON to this file")
	fs.StringVar(&o.plotPath, "plot", "", "draw the latency histogram and frames/s over time to this .png or .svg file")
	fs.StringVar(&o.cfg.MetricsToken, "metrics-token", "", "bearer token of the server's /metrics")
	fs.StringVar(&o.cfg.MetricsURL, "metrics-url", "", "the server's metrics endpoint (default --url + /metrics)")
	fs.StringVar(&o.logLevel, "log-level", "error", "debug, info, warn or error (callers' SDK logs)")
	fs.StringVar(&o.profilePath, "server-profile", "", "write a CPU profile of the server over the steady part to this file (needs sotto serve --pprof)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the load tester itself to this file")
	fs.BoolVar(&o.floor, "floor", false, "after the run, measure the floor relay (internal/floor) with the same traffic and report the server's ratio to it")
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	secret, err := secretOrDev(o.secret)
	if err != nil {
		fmt.Fprintf(stderr, "sotto load: %v\n", err)
		return o, errUsage
	}
	o.cfg.Secret = []byte(secret)
	if o.plotPath != "" {
		if ext := strings.ToLower(filepath.Ext(o.plotPath)); ext != ".png" && ext != ".svg" {
			fmt.Fprintf(stderr, "sotto load: --plot %q: want a .png or .svg file\n", o.plotPath)
			return o, errUsage
		}
	}
	return o, nil
}

// floorRelayArg makes "sotto load" the floor relay's child process.
const floorRelayArg = "floor-relay"

// runLoad implements "sotto load".
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == floorRelayArg {
		return floor.ServeRelay(os.Stdin, stdout)
	}
	o, err := parseLoad(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, "text", stderr)
	if err != nil {
		return err
	}
	o.cfg.Logger = log
	if o.audio != "" {
		if o.cfg.Audio, err = os.ReadFile(o.audio); err != nil {
			return fmt.Errorf("--audio: %w", err)
		}
	}
	if o.floor {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--floor: %w", err)
		}
		o.cfg.Floor = func() *exec.Cmd {
			cmd := exec.CommandContext(ctx, exe, "load", floorRelayArg)
			cmd.Stderr = stderr
			return cmd
		}
	}
	if o.profilePath != "" {
		f, err := os.Create(o.profilePath)
		if err != nil {
			return fmt.Errorf("--server-profile: %w", err)
		}
		defer f.Close()
		o.cfg.ServerProfile = f
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	o.cfg.Progress = stderr
	o.cfg.Terminal = isTerminal(stderr)

	fmt.Fprintf(stderr, "sotto load: %d rooms x %d callers against %s for %v after the ramp\n", o.cfg.Rooms, o.cfg.Callers, o.cfg.URL, o.cfg.Duration)
	rep, err := loadtest.Run(ctx, o.cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if o.plotPath != "" {
		if err := writePlot(o.plotPath, rep); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if rep.Failed() {
		return errLoadFailed
	}
	return nil
}

func writePlot(path string, rep *loadtest.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		err = loadtest.PlotSVG(f, rep)
	} else {
		err = loadtest.PlotPNG(f, rep)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isTerminal reports whether w is a character device (a terminal), where
// the progress line is rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
