// Command go-client walks through orchestrator-state from Go: it saves, reads,
// lists and streams workflow executions, reads the google.rpc.BadRequest of an
// invalid call, and watches an agent's circuit breaker open while it reports
// failed calls. Every answer is printed as one line, "<what> <protojson>".
//
//	./generate.sh && ./build.sh
//	./go-client -addr 127.0.0.1:50051 -tenant 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	statev1 "github.com/orchestrator-state/orchestrator-state/examples/go-client/gen/orchestration/state/v1"
)

const workflowName = "go-example"

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "host:port of orchestrator-state (h2c)")
	tenant := flag.String("tenant", "", "tenant id, sent as x-tenant-id")
	apiKey := flag.String("api-key", "", "API key, sent as authorization: Bearer <key>")
	count := flag.Int("count", 3, "executions to save")
	agent := flag.String("agent", "go-example-agent", "agent whose breaker to watch")
	flag.Parse()

	// h2c: the server's port speaks HTTP/2 without TLS unless TLS is configured.
	conn, err := grpc.Dial(*addr, grpc.WithInsecure())
	check(err)
	defer conn.Close()

	// Every call carries the tenant, and the API key when the server has keys.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant-id", *tenant)
	if *apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*apiKey)
	}
	workflows := statev1.NewWorkflowStateServiceClient(conn)
	breakers := statev1.NewCircuitBreakerServiceClient(conn)

	for i := 1; i <= *count; i++ {
		saved, err := workflows.SaveWorkflowExecution(ctx, &statev1.SaveWorkflowExecutionRequest{
			Execution: newExecution(fmt.Sprintf("go-example-%d", i)),
		})
		check(err)
		show("save", saved)
	}

	got, err := workflows.GetWorkflowExecution(ctx, &statev1.GetWorkflowExecutionRequest{ExecutionId: "go-example-1"})
	check(err)
	show("get", got)

	// Two per page, following next_page_token to the end.
	for token := ""; ; {
		page, err := workflows.ListWorkflowExecutions(ctx, &statev1.ListWorkflowExecutionsRequest{
			WorkflowName: workflowName, PageSize: 2, PageToken: token,
		})
		check(err)
		show("list", page)
		if token = page.NextPageToken; token == "" {
			break
		}
	}

	// What an orchestrator resumes after a restart, oldest first.
	stream, err := workflows.StreamIncompleteWorkflows(ctx, &statev1.StreamIncompleteWorkflowsRequest{WorkflowName: workflowName})
	check(err)
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		check(err)
		show("stream", msg)
	}

	// INVALID_ARGUMENT carries a google.rpc.BadRequest naming each bad field.
	_, err = workflows.GetWorkflowExecution(ctx, &statev1.GetWorkflowExecutionRequest{ExecutionId: ""})
	if status.Code(err) != codes.InvalidArgument {
		log.Fatalf("expected INVALID_ARGUMENT, got %v", err)
	}
	for _, detail := range status.Convert(err).Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok {
			for _, violation := range badRequest.GetFieldViolations() {
				line, err := json.Marshal(map[string]string{"field": violation.GetField(), "description": violation.GetDescription()})
				check(err)
				fmt.Printf("invalid %s\n", line)
			}
		}
	}

	watchBreaker(ctx, breakers, *agent)
}

// watchBreaker watches one agent's breaker and reports failed calls until the
// breaker opens.
func watchBreaker(ctx context.Context, breakers statev1.CircuitBreakerServiceClient, agent string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A breaker of our own that opens after two failures in a row.
	_, err := breakers.SaveCircuitBreakerState(ctx, &statev1.SaveCircuitBreakerStateRequest{
		CircuitBreaker: &statev1.CircuitBreaker{
			AgentKey: agent,
			State:    statev1.CircuitState_CIRCUIT_STATE_CLOSED,
			Policy:   &statev1.CircuitBreakerPolicy{ConsecutiveFailureThreshold: 2},
		},
	})
	check(err)
	watch, err := breakers.WatchCircuitBreakers(ctx, &statev1.WatchCircuitBreakersRequest{
		AgentKeys: []string{agent}, IncludeCurrentStates: true,
	})
	check(err)
	for {
		event, err := watch.Recv()
		check(err)
		show("watch", event)
		if event.GetTransition() != nil {
			return // the breaker opened
		}
		if event.GetCaughtUp() != nil {
			// Listening now: every transition from here on arrives.
			for i := 0; i < 2; i++ {
				outcome, err := breakers.RecordCallOutcome(ctx, &statev1.RecordCallOutcomeRequest{
					AgentKey: agent, Success: false, Duration: durationpb.New(1500 * time.Millisecond),
				})
				check(err)
				show("outcome", outcome)
			}
		}
	}
}

func newExecution(id string) *statev1.WorkflowExecution {
	vars, err := structpb.NewStruct(map[string]interface{}{"orderId": id, "priority": "high"})
	check(err)
	return &statev1.WorkflowExecution{
		ExecutionId:  id,
		WorkflowName: workflowName,
		Status:       statev1.WorkflowStatus_WORKFLOW_STATUS_RUNNING,
		Definition: &statev1.WorkflowDefinition{
			Name: workflowName, Version: "1.0.0",
			Steps: []*statev1.WorkflowStep{
				{StepId: "fetch", RequiredCapability: "erp-read", Timeout: durationpb.New(30 * time.Second)},
				{StepId: "ship", DependsOn: []string{"fetch"}},
			},
		},
		Context: vars,
		StepExecutions: []*statev1.StepExecution{
			{StepId: "fetch", Status: statev1.WorkflowStatus_WORKFLOW_STATUS_COMPLETED, AgentKey: "erp-agent", Attempt: 1},
		},
		StepOutputs: map[string]*structpb.Value{"fetch": structpb.NewNumberValue(3)},
		Labels:      map[string]string{"team": "fulfilment"},
	}
}

func show(what string, msg proto.Message) {
	line, err := protojson.Marshal(msg)
	check(err)
	fmt.Printf("%s %s\n", what, line)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
