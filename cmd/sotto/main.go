// Command sotto is the Sotto server and its tools.
//
//	sotto serve    run signaling, the media relay (and TURN) in one process
//	sotto token    mint a room token
//	sotto load     load-test a server with synthetic callers
//	sotto version  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `Usage: sotto <command> [flags]

Commands:
  serve     run the server: signaling (HTTP + WebSocket) and the media relay
  token     mint a token admitting an identity to a room
  load      run synthetic callers against a server and report latency, loss and server CPU
  version   print the version

Every flag has an environment twin: --max-participants is SOTTO_MAX_PARTICIPANTS.
A flag given on the command line wins over the environment.
Run "sotto <command> -h" for the command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stderr)
	case "token":
		err = runToken(args[1:], stdout, stderr)
	case "load":
		err = runLoad(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sotto: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(stderr, "sotto: %v\n", err)
		return 1
	}
}

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return "sotto " + v + " " + runtime.Version()
}
