package main

import (
	"context"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/oci"
)

func ociFeaturesCommand() *cli.Command {
	return &cli.Command{
		Name:  "features",
		Usage: "print what this runtime implements (runtime-spec features JSON)",
		Action: func(context.Context, *cli.Command) error {
			return printJSON(oci.Features())
		},
	}
}
