// A small phonecheck client in Go: one lookup, a streamed bulk check, and a rich error.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	phonecheckv1 "github.com/phonecheck/phonecheck/gen/go/phonecheck/v1"
)

func main() {
	address := "127.0.0.1:50051"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := phonecheckv1.NewPhoneCheckServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// One number.
	res, err := client.LookupNumber(ctx, &phonecheckv1.LookupNumberRequest{
		Number: "+86 138-0013-8000",
		Checks: []phonecheckv1.Check{phonecheckv1.Check_CHECK_LINE_STATUS},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lookup:", res.Report.Info.E164, res.Report.LineStatus.Status)

	// A stream: send in one goroutine (Send blocks when the server pushes back), receive here.
	stream, err := client.CheckNumbers(ctx)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for i := 0; i < 3000; i++ {
			item := &phonecheckv1.CheckNumbersRequest{
				RequestId: fmt.Sprint(i),
				Number:    fmt.Sprintf("139%08d", i),
				Checks:    []phonecheckv1.Check{phonecheckv1.Check_CHECK_LINE_STATUS},
			}
			if err := stream.Send(item); err != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	answered := 0
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if msg.GetResult() != nil {
			answered++
		} else if s := msg.GetSummary(); s != nil {
			fmt.Println("bulk:", answered, "answered,", s.BillableCalls, "billable")
		}
	}

	// A rich error.
	_, err = client.LookupNumber(ctx, &phonecheckv1.LookupNumberRequest{Number: "call me"})
	st, _ := status.FromError(err)
	for _, detail := range st.Details() {
		if br, ok := detail.(*errdetails.BadRequest); ok {
			fmt.Println("error:", st.Code(), "on field", br.FieldViolations[0].Field)
		}
	}
}
