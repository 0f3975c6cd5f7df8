package dev.phonecheck.example;

import com.google.rpc.BadRequest;
import dev.phonecheck.v1.Check;
import dev.phonecheck.v1.CheckNumbersRequest;
import dev.phonecheck.v1.CheckNumbersResponse;
import dev.phonecheck.v1.LookupNumberRequest;
import dev.phonecheck.v1.PhoneCheckServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** A small phonecheck client: one lookup, a flow-controlled stream, and a rich error. */
public final class PhoneCheckClient {
  public static void main(String[] args) throws Exception {
    String address = args.length > 0 ? args[0] : "127.0.0.1:50051";
    ManagedChannel channel = ManagedChannelBuilder.forTarget(address).usePlaintext().build();
    var blocking = PhoneCheckServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);

    var report = blocking.lookupNumber(LookupNumberRequest.newBuilder()
        .setNumber("+86 138-0013-8000").addChecks(Check.CHECK_LINE_STATUS).build()).getReport();
    System.out.println("lookup: " + report.getInfo().getE164() + " " + report.getLineStatus().getStatus());

    // Sends only while the transport is ready: the server's back-pressure reaches this loop.
    int count = 3000;
    AtomicInteger answered = new AtomicInteger();
    CountDownLatch done = new CountDownLatch(1);
    PhoneCheckServiceGrpc.newStub(channel).checkNumbers(
        new ClientResponseObserver<CheckNumbersRequest, CheckNumbersResponse>() {
          int next = 0;

          @Override
          public void beforeStart(ClientCallStreamObserver<CheckNumbersRequest> requests) {
            requests.setOnReadyHandler(() -> {
              while (requests.isReady() && next < count) {
                requests.onNext(CheckNumbersRequest.newBuilder()
                    .setRequestId(Integer.toString(next))
                    .setNumber(String.format("139%08d", next))
                    .addChecks(Check.CHECK_LINE_STATUS).build());
                next++;
              }
              if (next == count) {
                requests.onCompleted();
                next++;
              }
            });
          }

          @Override
          public void onNext(CheckNumbersResponse message) {
            if (message.hasResult()) {
              answered.incrementAndGet();
            } else {
              System.out.println("bulk: " + answered.get() + " answered, "
                  + message.getSummary().getBillableCalls() + " billable");
            }
          }

          @Override
          public void onError(Throwable t) {
            t.printStackTrace();
            done.countDown();
          }

          @Override
          public void onCompleted() {
            done.countDown();
          }
        });
    done.await(5, TimeUnit.MINUTES);

    try {
      blocking.lookupNumber(LookupNumberRequest.newBuilder().setNumber("call me").build());
    } catch (StatusRuntimeException e) {
      var status = StatusProto.fromThrowable(e);
      for (var detail : status.getDetailsList()) {
        if (detail.is(BadRequest.class)) {
          var violation = detail.unpack(BadRequest.class).getFieldViolations(0);
          System.out.println("error: " + e.getStatus().getCode() + " on field " + violation.getField());
        }
      }
    }
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
